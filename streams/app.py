"""The Faust app: one agent turns commands into events against the state table.

Flow, per region (= Kafka key = partition)::

    dispatch.commands --> apply_commands --> decide() --> table (changelog) + dispatch.events
            ^                                                    |
            +------------- movement timer (unit_position) <------+ reads moving units

Crash safety. Faust is at-least-once: it flushes the producer before committing a source
offset, so after a crash the commands after the last committed offset run again, against
a table that may already hold some of their effects. For every command we therefore write
its *record* (the events and entity states it produced) to the table FIRST, then the
entity states, then publish the events. All of it goes to one changelog partition, in that
order, so after a crash the table holds, for the command that was cut off, either nothing
(it runs again against exactly the state it first saw, with the record's timestamp as
``now``, so it decides the same) or its record (we re-store the record's entity states,
which never overwrite newer versions, and re-publish its events with the same event ids).
A client's retry of a command id is the same case: one effect, events re-published.

How the writes leave (``ChangelogTable``): the agent takes the commands in batches
(``stream.noack_take``: Faust acks nothing by itself) and decides them one after the other
against the table; their table writes are kept in write order and, once the batch is
decided, sent with one awaited ``producer.send`` each to the changelog partition of the
command that made them, then the batch's events; only then does the agent ack the batch's
messages. A command's record still precedes its entity states in the changelog (write
order), every piece is queued in the one aiokafka producer before its offset is acked and
so before it can be committed, and Faust flushes that producer before committing, so the
argument above holds unchanged: a crash mid-batch leaves each command with its record or
with nothing, as before. (The order of a changelog write and an event on different topics
was never guaranteed on the broker, and the argument never needs it.) Batches share Faust's
fixed per-batch costs and the producer awaits; Faust's per-message stream cost remains.
Each JSON text is made once (``streams.state.Encoded``): the entity's text is the same
string in its record, its table entry and its event.

We chose this over ``processing_guarantee="exactly_once"``: Faust's transactional mode
needs one producer per partition and fences on rebalance, adds a commit round-trip per
transaction, and would still not cover a client retrying a command id. The record makes
redelivery harmless whatever its cause, and consumers dedupe by event id anyway.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from faust.sensors import Monitor
from faust.streams import current_event
from faust.transport.drivers import aiokafka as faust_aiokafka

from dispatchwire.settings import Settings
from infra.topics import region_partitioner
from schemas import SchemaError, UnitPosition, decode_command, encode
from streams import deadletters, offsets, readiness
from streams.decisions import Outcome, decide, movement_command_id
from streams.roadgraph import network_for
from streams.routing import GraphRouter, Router
from streams.state import (
    TABLE_NAME,
    DispatchState,
    command_fingerprint,
    encoded,
    reused_id_outcome,
)

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
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{hostport.strip()}" for hostport in bootstrap.split(","))


class ChangelogTable(faust.Table):
    """A Faust table whose writes reach its changelog through ``send_unsent()``.

    Faust's own path sends each write as a ``FutureMessage`` through the ``ProducerBuffer``
    (a queue drained one message per task switch, with per-message serializer, channel and
    callback layers), which cost more than our whole command. Here a write is kept, with
    the partition of the command being processed, until the agent awaits
    ``send_unsent()``: one ``producer.send`` per write, in write order, straight to the
    aiokafka producer. The bytes are those Faust would write (JSON key, raw value), so
    Faust's recovery reads them as usual. Safe for at-least-once because Faust flushes the
    producer before it commits an offset, and the agent asks for the next command (which
    acks this one) only after ``send_unsent()`` returned. Only for the memory store: the
    skipped ``_on_changelog_sent`` callback records offsets for RocksDB alone.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsent: list[tuple[int, str, Any]] = []
        # the partition of the command being processed, set by the agent (batches)
        self.partition: int | None = None

    def on_key_set(self, key: Any, value: Any) -> None:
        partition = self.partition
        if partition is None:
            event = current_event()
            if event is None:
                raise RuntimeError(f"table {self.name} written outside the commands agent")
            partition = event.message.partition
        self.unsent.append((partition, key, value))

    async def send_unsent(self) -> None:
        if not self.unsent:
            return
        producer = self.app.producer
        topic = self.changelog_topic.get_topic_name()
        unsent, self.unsent = self.unsent, []
        for partition, key, value in unsent:
            await producer.send(topic, json.dumps(key).encode(),
                                value if isinstance(value, bytes) else value.encode(),
                                partition, None, None)


def create_faust_app(settings: Settings, router: Router | None = None) -> faust.App:
    """Build the worker's app: topics, the state table, the agent, the timer, the pages."""
    _shorten_fetch_wait()
    offsets.install()
    web_port = settings.worker_web_port
    datadir = Path(settings.data_dir) / "faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=broker_url(settings.kafka_bootstrap),
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
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": settings.partitions}
    commands = app.topic(settings.commands_topic, **raw)
    # values are JSON text made by pydantic (see streams.state); Faust passes them through
    table = app.tables.add(ChangelogTable(
        app, name=TABLE_NAME, beacon=app.tables.beacon, partitions=settings.partitions,
        value_type=bytes))  # -> the "raw" value serializer; keys stay JSON
    state = DispatchState(table)
    tick_s = settings.tick_seconds
    events_topic = settings.events_topic

    async def publish(outcome: Outcome) -> None:
        producer = app.producer
        for event, text in zip(outcome.events, encoded(outcome).events, strict=True):
            await producer.send(events_topic, event.region.encode(), text.encode(),
                                None, None, None)

    async def apply_one(message: Any) -> Outcome | None:
        """Decide one command; its table writes are kept in ``table.unsent``. A command that
        cannot be applied is dead-lettered (``streams.deadletters``) before it counts as done."""
        try:
            return decide_one(message)
        except SchemaError as exc:
            log.warning("undecodable command at %s[%s]@%s sent to %s: %s",
                        message.message.topic, message.message.partition,
                        message.message.offset, settings.dead_letter_topic, exc)
            error = str(exc)
        except Exception as exc:
            log.exception("command at %s[%s]@%s failed; sent to %s", message.message.topic,
                          message.message.partition, message.message.offset,
                          settings.dead_letter_topic)
            error = f"{type(exc).__name__}: {exc}"
        await deadletters.forward(app, settings.dead_letter_topic, message, error)
        return None

    def decide_one(message: Any) -> Outcome | None:
        command = decode_command(message.value)
        is_tick = isinstance(command, UnitPosition) and command.lat is None
        key = state.record_key(command.command_id, command.unit_id if is_tick else None)
        fingerprint = command_fingerprint(command)
        seen = state.record(key, command.command_id)
        if seen is not None:
            if not is_tick and not state.same_command(key, fingerprint):
                # Another command under a used id (issue 11): refused, and not recorded.
                return reused_id_outcome(command, fingerprint)
            # Redelivered (crash replay or client retry): finish what the record says.
            state.apply(seen)
            return seen
        now = datetime.fromtimestamp(message.message.timestamp, UTC)
        seen = decide(command, state, router, now, tick_s)
        if not seen.events:
            return None  # a stale tick or a repeated registration: nothing happened
        state.put_record(key, command.command_id, seen, fingerprint)
        state.apply(seen)
        return seen

    @app.agent(commands, name="apply_commands", concurrency=1)
    async def apply_commands(stream: faust.Stream) -> None:
        # (partition, generation) whose dead letter could not be sent before the partition
        # was revoked: its later messages are released unacked too (streams.deadletters).
        held: set[tuple[int, int]] = set()
        async for batch in stream.noack_take(BATCH_MAX, within=BATCH_WITHIN_S):
            outcomes: list[Outcome] = []
            done: list[Any] = []  # applied or dead-lettered: only these are acked
            for message in batch:
                source = (message.message.partition, message.message.generation_id)
                if source in held:
                    deadletters.release(app, message)
                    continue
                table.partition = message.message.partition
                try:
                    seen = await apply_one(message)
                except deadletters.DeadLetterNotSent:
                    held.add(source)
                    deadletters.release(app, message)
                    continue
                finally:
                    table.partition = None
                done.append(message)
                if seen is not None:
                    outcomes.append(seen)
            # The batch's record and entity writes (in write order, so each command's record
            # precedes its entities), then its events; only then are its messages acked.
            await table.send_unsent()
            for seen in outcomes:
                await publish(seen)
            for message in done:
                await stream.ack(message)

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
            cmd = UnitPosition(command_id=command_id, region=unit.region, unit_id=unit.id,
                               tick=unit.version, issued_by="worker")
            await commands.send(key=unit.region.encode(), value=encode(cmd))
        for command_id, at in list(sent.items()):
            if now - at > 4 * RESEND_AFTER_S:
                del sent[command_id]

    @app.page("/dispatch/state/")
    async def state_page(web: Any, request: Any) -> Any:
        """The table's emergencies and units (this worker's partitions), for tests and ops."""
        return web.json(state.snapshot())

    broker = readiness.BrokerContact(settings.worker_broker_timeout_s)

    @app.timer(interval=readiness.PROBE_INTERVAL_S, name="probe_broker")
    async def probe_broker() -> None:
        await broker.probe(app)

    @app.page("/dispatch/ready/")
    async def ready_page(web: Any, request: Any) -> Any:
        """200 while the worker owns its partitions, has recovered its table and hears
        from the broker; else 503 with the reason."""
        assigned = sorted(tp.partition for tp in app.consumer.assignment()
                          if tp.topic == settings.commands_topic)
        if not assigned:
            reason = "no commands partition assigned"
        elif app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set():
            reason = "rebalancing or recovering the table"
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
