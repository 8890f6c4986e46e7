"""The Faust app: one agent turns commands into events against the state table.

Flow, per region (= Kafka key = partition)::

    dispatch.commands --> apply_commands --> decide() --> table (changelog) + dispatch.events
            ^                                                    |
            +------------- movement timer (unit_position) <------+ reads moving units

The commands themselves (decode, record check, decide, dead letters, the batch's writes,
events and acks) are ``streams.processing``, and so is the crash-safety argument: this module
is the Faust wiring around it (the app, its topics and table, the agent, the timers, the pages).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import faust
from faust.sensors import Monitor
from faust.transport.drivers import aiokafka as faust_aiokafka

from dispatchwire.settings import Settings
from infra.clients import faust_broker_options
from infra.topics import region_partitioner
from schemas import UnitPosition, encode
from streams import offsets, readiness
from streams.decisions import movement_command_id
from streams.fleetview import FleetView
from streams.processing import BatchProcessor, ChangelogTable
from streams.ranking import DispatchPolicy
from streams.roadgraph import network_for
from streams.routing import GraphRouter, Router
from streams.state import TABLE_NAME, DispatchState

log = logging.getLogger(__name__)

# Short enough that a worker restarted after a crash takes over its partitions in seconds
# (the group waits this long for the dead member), long enough for a busy event loop.
SESSION_TIMEOUT_S = 10.0
# The timer does not resend the same move command sooner than this (the worker may lag).
RESEND_AFTER_S = 5.0


# A command's changelog writes and events leave in one produce request instead of one each;
# 5 ms is small beside the API's latency budget (issue 7: p99 <= 60 ms end to end).
PRODUCER_LINGER_S = 0.005
PRODUCER_BATCH_BYTES = 256 * 1024
# The agent takes the commands in batches of up to BATCH_MAX (waiting at most BATCH_WITHIN_S
# for a batch to fill); it acks them once their writes and events are queued in the producer.
BATCH_MAX = 500
BATCH_WITHIN_S = 0.005
# Records per fetch, for the stream and for table recovery alike.
MAX_POLL_RECORDS = 2_000


# Faust builds its aiokafka consumer with fetch_max_wait_ms=1500, fixed. The consumer has
# more than one partition on the broker (the commands partitions and Faust's own idle
# ``__assignor-__leader`` topic), aiokafka keeps one fetch in flight per broker, and once a
# busy partition's buffered records run out its next fetch waits behind the long poll of
# the idle ones: the worker stalled up to 1.5 s per ``broker_max_poll_records`` batch
# (a no-op Faust agent managed ~2.4k messages/s at 25 % CPU). 20 ms bounds that stall.
FETCH_MAX_WAIT_MS = 20


def _shorten_fetch_wait() -> None:
    """Patch Faust's aiokafka driver (once per process) to use ``FETCH_MAX_WAIT_MS``."""
    thread_cls = faust_aiokafka.AIOKafkaConsumerThread
    if getattr(thread_cls, "_dispatchwire_fetch_wait", False):
        return
    create = thread_cls._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by consumer.start()
        return consumer

    thread_cls._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
    thread_cls._dispatchwire_fetch_wait = True  # type: ignore[attr-defined]


class QuietMonitor(Monitor):
    """Faust's monitor without its per-message bookkeeping (counters, timestamps and
    ``str(stream)`` lookups for every message, event and table access: ~7 % of the
    worker's CPU). Commits, offsets, rebalances and sends are still tracked."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        # The one stamp Faust's stall check reads (``verify_event_path``): without it every
        # partition with a backlog is logged as "Stream has not started processing".
        self.stream_inbound_time[tp] = time.monotonic()

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass


def create_faust_app(settings: Settings, router: Router | None = None) -> faust.App:
    """Build the worker's app: topics, the state table, the agent, the timer, the pages."""
    _shorten_fetch_wait()
    offsets.install()
    web_port = settings.worker_web_port
    datadir = Path(settings.data_dir) / "faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        **faust_broker_options(settings),
        store="memory://",
        # the table's keys and values are JSON; our own topics say "raw" explicitly
        key_serializer="json",
        value_serializer="json",
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.worker_standby_replicas,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=SESSION_TIMEOUT_S * 2,
        datadir=str(datadir),
        web_enabled=web_port > 0,
        web_port=max(web_port, 1),
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_in_thread=False,
        # Throughput (see tests/streams/bench_worker.py): batch what we produce a little,
        # hand the agent big fetches, and skip the per-message statistics nobody reads.
        producer_linger=PRODUCER_LINGER_S,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        broker_max_poll_records=MAX_POLL_RECORDS,
        Monitor=QuietMonitor,
        # Events and the movement timer's commands go to their region's partition, the one
        # its commands come from (schemas.placement; changelog writes name theirs).
        producer_partitioner=region_partitioner(settings),
    )
    router = router or GraphRouter(network_for(settings))
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.partitions,
    }
    commands = app.topic(settings.commands_topic, **raw)
    # values are JSON text made by pydantic (see streams.state); Faust passes them through
    table = ChangelogTable(
        app,
        name=TABLE_NAME,
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        value_type=bytes,
    )  # -> the "raw" value serializer; keys stay JSON
    app.tables.add(table)
    tick_s = settings.tick_seconds

    # Mutual aid (issue 15): every region's units, seen read-only (streams.fleetview), and
    # the saga's commands and the units' states published for the other workers.
    fleet = FleetView(settings)
    policy = DispatchPolicy(
        mutual_aid_regions=settings.regions,
        home_preference_s=settings.mutual_aid_home_preference_s,
        coverage_margin_s=settings.mutual_aid_coverage_margin_s,
    )
    processor = BatchProcessor(
        app,
        table,
        router,
        tick_s,
        settings.events_topic,
        settings.dead_letter_topic,
        commands_topic=settings.commands_topic,
        units_topic=settings.units_topic,
        state=DispatchState(table, fleet, policy),
    )
    state = processor.state

    @app.task
    async def follow_fleet() -> None:
        await fleet.follow()

    # an agent is typed as taking a StreamT, which lacks faust-streaming's noack_take
    @app.agent(commands, name="apply_commands", concurrency=1)  # type: ignore[arg-type]
    async def apply_commands(stream: faust.Stream) -> None:
        # (partition, generation) whose dead letter could not be sent before the partition
        # was revoked: its later messages are released unacked too (streams.deadletters).
        held: set[tuple[int, int]] = set()
        async for batch in stream.noack_take(BATCH_MAX, within=BATCH_WITHIN_S):
            await processor.process(batch, stream.ack, held)

    sent: dict[str, float] = {}

    @app.timer(interval=tick_s, name="move_units")
    async def move_units() -> None:
        """Ask the agent to move every dispatched unit one step (through the log, so a move
        is ordered with the region's other commands and idempotent by its command id)."""
        if app.rebalancing or not app.consumer.assignment():
            return
        now = time.monotonic()
        for unit in list(state.moving_units()):
            command_id = movement_command_id(unit.id, unit.emergency_id, unit.version)
            if now - sent.get(command_id, 0.0) < RESEND_AFTER_S:
                continue
            sent[command_id] = now
            cmd = UnitPosition(
                command_id=command_id,
                region=unit.region,
                unit_id=unit.id,
                tick=unit.version,
                issued_by="worker",
            )
            await commands.send(key=unit.region.encode(), value=encode(cmd))
        for command_id, at in list(sent.items()):
            if now - at > 4 * RESEND_AFTER_S:
                del sent[command_id]

    @app.page("/dispatch/state/")
    async def state_page(web: Any, request: Any) -> Any:
        """The table's emergencies and units (this worker's partitions), for tests and ops."""
        return web.json(state.snapshot())

    @app.page("/dispatch/fleet/")
    async def fleet_page(web: Any, request: Any) -> Any:
        """The fleet view (issue 15): every unit's id, region, status and version as this
        worker sees it, for tests and ops."""
        units = sorted(fleet.units(), key=lambda u: u.id)
        return web.json(
            {
                "caught_up": fleet.caught_up.is_set(),
                "units": [
                    {"id": u.id, "region": u.region, "status": u.status, "version": u.version}
                    for u in units
                ],
            }
        )

    broker = readiness.BrokerContact(settings.worker_broker_timeout_s)

    @app.timer(interval=readiness.PROBE_INTERVAL_S, name="probe_broker")
    async def probe_broker() -> None:
        await broker.probe(app)

    @app.page("/dispatch/ready/")
    async def ready_page(web: Any, request: Any) -> Any:
        """200 while the worker owns its partitions, has recovered its table and hears
        from the broker; else 503 with the reason."""
        assigned = sorted(
            tp.partition for tp in app.consumer.assignment() if tp.topic == settings.commands_topic
        )
        reason: str | None
        if not assigned:
            reason = "no commands partition assigned"
        # TableManagerT (faust.types) does not declare the TableManager's ``recovery``
        elif app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            reason = "rebalancing or recovering the table"
        elif not fleet.caught_up.is_set():
            reason = "reading the fleet view (dispatch.units)"
        else:
            reason = broker.unreachable()
        body: dict[str, Any] = {"ready": reason is None, "partitions": assigned}
        if reason is not None:
            body["reason"] = reason
        return web.json(body, status=200 if reason is None else 503)

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Run the worker until Ctrl-C / SIGTERM (Faust's worker installs the handlers)."""
    app = create_faust_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
