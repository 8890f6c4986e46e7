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

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import faust
from faust.sensors import Monitor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ChannelT
from mode.services import WaitResults
from mode.utils.aiter import aiter

from dispatchwire.collector import tune_gc
from dispatchwire.settings import Settings
from infra.clients import faust_broker_options, past_silent_nodes
from infra.topics import region_partitioner
from schemas import UnitPosition, encode
from schemas.commands import ArchiveClosed, ExpireRecords
from schemas.placement import partition_for
from streams import offsets, progress, readiness
from streams.decisions import archive_command_id, movement_command_id
from streams.fleetview import FleetView
from streams.lease import GroupLease, track_group_lease
from streams.processing import BatchProcessor, ChangelogTable
from streams.ranking import DispatchPolicy
from streams.roadgraph import network_for
from streams.routing import GraphRouter, Router
from streams.state import TABLE_NAME, DispatchState

log = logging.getLogger(__name__)

# How long the group waits for a member that stopped heartbeating (a SIGKILLed worker)
# before it hands that member's partitions on: most of a takeover (issue 14). 6 s is the
# broker's default group.min.session.timeout.ms. Heartbeats (every 1 s) leave from the
# aiokafka consumer's own thread and event loop, so a busy worker loop does not delay them;
# at load averages of 10-20 on the 2 shared cores no member missed its session (no
# rebalance but the ones the takeover runs caused). A worker stopped with SIGTERM leaves
# the group at once (LeaveGroup) and waits for none of this (takeover 2.5 s).
SESSION_TIMEOUT_S = 6.0
# How long a rebalance may wait for the members to rejoin.
REBALANCE_TIMEOUT_S = SESSION_TIMEOUT_S * 2
# How long the consumer waits for any answer (heartbeat, commit, fetch, join). Faust's 90 s
# default held a whole group still when one broker went silent (SIGSTOPped, as a frozen VM
# or a network partition would be): the heartbeats and commits in flight to it, the group's
# coordinator, waited out the 90 s while the group moved on without the members, and no
# command was answered for 90-135 s (tests/faults/test_cluster_faults.py, the paused node).
# A join is held by the broker up to the rebalance timeout, so this is that and 5 s more,
# as the Java client does; Faust wants it no shorter than the session timeout.
REQUEST_TIMEOUT_S = REBALANCE_TIMEOUT_S + 5.0
# The survivor of a takeover starts the gained partitions at their last committed offset and
# answers the dead worker's uncommitted tail again (its recorded events, no new decisions)
# before anything newer: up to Faust's default 2.8 s of commands; 1 s of them instead.
COMMIT_INTERVAL_S = 1.0
# The timer does not resend the same move command sooner than this (the worker may lag).
RESEND_AFTER_S = 5.0


# No linger (it was 5 ms): every event waited it out, 5 of the ~10 ms from the worker's
# produce to a consumer (issue 16, the e2e bench's hops). Under load aiokafka still
# batches: it keeps one request in flight per broker and queues what comes meanwhile
# (worker CPU per command unchanged within the noise of the shared machine, README Results).
PRODUCER_LINGER_S = 0.0
PRODUCER_BATCH_BYTES = 256 * 1024
# The agent takes the commands in batches of up to BATCH_MAX: each batch is what had arrived
# by the time the agent is free (``ready_batches``), with no clock. Faust's ``noack_take``
# cut batches by a 2 ms window of wall time instead: on a shared core, where the worker
# waits for the CPU most of those 2 ms (issue 16: runnable but not running 83 % of the
# time), a backlog still came in batches of a few commands, each paying the batch's fixed
# costs, and the worker fell further behind the fleet's 1,000 fixes a second.
BATCH_MAX = 500
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


# Faust's producer waits up to ``producer_request_timeout`` (1,200 s) for the answer to a
# request in flight, and aiokafka takes that one value as a batch's time to live too. A
# broker that went silent with a request of ours in flight (SIGSTOPped; likewise a frozen
# VM or a network that drops packets) held the worker for as long as it stayed silent: the
# batch's writes were never acknowledged, the agent waited for them, and the group's
# rebalance waited for the agent (tests/faults/test_cluster_faults.py, the paused node: no
# command answered for 121 s). The Java client keeps the two apart (``request.timeout.ms``
# 30 s, ``delivery.timeout.ms`` 120 s); so does this: a request not answered within
# ``REQUEST_TIMEOUT_S`` fails, and its batch, still alive, goes back to the front of its
# partition's queue and is sent again, in order, once the metadata names the new leader.
def _bound_produce_waits() -> None:
    """Patch Faust's aiokafka producer (once per process): see above."""
    producer_cls = faust_aiokafka.Producer
    if getattr(producer_cls, "_dispatchwire_produce_wait", False):
        return
    new_producer = producer_cls._new_producer

    def bounded_new_producer(self: Any, transactional_id: str | None = None) -> Any:
        producer = new_producer(self, transactional_id)
        timeout_ms = int(REQUEST_TIMEOUT_S * 1000)
        producer.client._request_timeout_ms = timeout_ms  # each connection's wait (made later)
        producer._sender._request_timeout_ms = timeout_ms  # the broker's wait for acks=all
        return producer

    producer_cls._new_producer = bounded_new_producer  # type: ignore[method-assign]
    producer_cls._dispatchwire_produce_wait = True  # type: ignore[attr-defined]


# Faust's fetcher hands each fetched message to the streams through
# ``wait_first(callback(message), suspend_flow.wait())``: four tasks, an ``asyncio.wait`` and
# three cancellations, several turns of the event loop per message, ~30 us of CPU. On a
# backlog the stream took its events out of the queue as fast as the fetcher put them in,
# so the agent's batches stayed at 1-2 commands however far behind the worker was (issue
# 16). ``_deliver_eagerly`` starts the callback at once instead: it almost never waits (its
# queue has room and the flow is on), and then the message is delivered without a task or
# a turn of the loop; when it does wait, the rest of it races ``suspend_flow`` as before.
def _deliver_eagerly() -> None:
    """Patch Faust's aiokafka consumer (once per process): see above."""
    consumer_cls = faust_aiokafka.Consumer
    if getattr(consumer_cls, "_dispatchwire_eager", False):
        return
    wait_first = consumer_cls.wait_first
    suspend_wait = asyncio.Event.wait.__code__

    async def eager_wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if not (
            len(coros) == 2
            and timeout is None
            and inspect.iscoroutine(coros[0])
            and getattr(coros[1], "cr_code", None) is suspend_wait
            and coros[1].cr_frame.f_locals.get("self") is self.suspend_flow
            and not (self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set())
        ):
            return await wait_first(self, *coros, timeout=timeout)
        delivery, suspended = coros
        try:
            waiting = delivery.send(None)
        except StopIteration as done:
            suspended.close()
            return WaitResults([delivery], [done.value], False)
        except BaseException:
            suspended.close()
            raise
        rest = asyncio.ensure_future(_resume(delivery, waiting))
        return await wait_first(self, rest, suspended)

    consumer_cls.wait_first = eager_wait_first  # type: ignore[method-assign]
    consumer_cls._dispatchwire_eager = True  # type: ignore[attr-defined]


class _Resumed:
    """Awaits the rest of a coroutine whose first step (run by hand) waits on ``waiting``."""

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self.coro = coro
        self.waiting = waiting

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.waiting
        while True:
            thrown: BaseException | None = None
            sent = None
            try:
                sent = yield pending
            except BaseException as exc:  # a cancellation goes on into the coroutine
                thrown = exc
            try:
                pending = coro.throw(thrown) if thrown is not None else coro.send(sent)
            except StopIteration as done:
                return done.value


async def _resume(coro: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    return await _Resumed(coro, waiting)


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


class GcPauses:
    """How long the garbage collector held the worker's loop, per generation (``gc.callbacks``:
    a collection runs inside whatever allocated last, so every command of the partition
    waits it out). Installed by ``run_worker``, the process's entry point.

    ``install`` also tunes the collector as the API does (``dispatchwire.collector``): the
    start-up heap (the road graph, its router and grid, Faust, the imports: ~100k objects
    that every full collection walked again, tens to hundreds of ms) frozen, and young
    collections every 20,000 allocations. The fleet bench (1,000 units, the worker behind,
    load average 7-10): 150 ms of collecting per second with the defaults, 78 frozen, 5
    frozen with the thresholds (no full collection).
    """

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self.longest = 0.0
        self._started = 0.0

    def install(self) -> None:
        tune_gc()
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.seconds[generation] += took
        self.counts[generation] += 1
        self.longest = max(self.longest, took)

    def as_json(self) -> dict[str, Any]:
        return {
            "gc_frozen": gc.get_freeze_count(),
            "gc_threshold": list(gc.get_threshold()),
            "gc_s": [round(s, 6) for s in self.seconds],
            "gc_counts": self.counts,
            "gc_longest_s": round(self.longest, 6),
        }


def create_faust_app(
    settings: Settings, router: Router | None = None, gc_pauses: GcPauses | None = None
) -> faust.App:
    """Build the worker's app: topics, the state table, the agent, the timer, the pages."""
    _shorten_fetch_wait()
    _deliver_eagerly()
    _bound_produce_waits()
    track_group_lease()
    offsets.install()
    past_silent_nodes()
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
        broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
        broker_request_timeout=REQUEST_TIMEOUT_S,
        broker_commit_interval=COMMIT_INTERVAL_S,
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
        # Faust makes the changelog cleanup.policy=compact; these let the log cleaner reach
        # it (only closed segments are compacted) and drop old tombstones (issue 16)
        extra_topic_configs=changelog_configs(settings),
    )  # -> the "raw" value serializer; keys stay JSON
    app.tables.add(table)
    tick_s = settings.tick_seconds

    def partition_of(region: str) -> int:
        return partition_for(region, settings.partitions, settings.regions)

    # Mutual aid (issue 15): every region's units, seen read-only (streams.fleetview), and
    # the saga's commands and the units' states published for the other workers.
    fleet = FleetView(settings)
    policy = DispatchPolicy(
        mutual_aid_regions=settings.regions,
        home_preference_s=settings.mutual_aid_home_preference_s,
        coverage_margin_s=settings.mutual_aid_coverage_margin_s,
    )
    lease = GroupLease(app, SESSION_TIMEOUT_S)
    processor = BatchProcessor(
        app,
        table,
        router,
        tick_s,
        settings.events_topic,
        settings.dead_letter_topic,
        partition_of=partition_of,
        commands_topic=settings.commands_topic,
        units_topic=settings.units_topic,
        state=DispatchState(table, fleet, policy),
        holds=lease.holds,
        # (aiokafka asks once until the rejoin it asked for has happened; later batches of
        # the old generation are let go without asking: streams.processing, ``held``; and
        # not at all once the worker has joined a later generation by itself)
        on_fenced=lambda generation: progress.request_rejoin(app, past=generation),
    )
    state = processor.state

    @app.task
    async def follow_fleet() -> None:
        await fleet.follow()

    # an agent is typed as taking a StreamT; ready_batches needs the Stream's internals
    @app.agent(commands, name="apply_commands", concurrency=1)  # type: ignore[arg-type]
    async def apply_commands(stream: faust.Stream) -> None:
        # (partition, generation) whose dead letter could not be sent before the partition
        # was revoked: its later messages are released unacked too (streams.deadletters).
        held: set[tuple[int, int]] = set()
        async for batch in ready_batches(stream, BATCH_MAX):
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

    @app.timer(interval=settings.command_record_sweep_s, name="expire_records")
    async def expire_records() -> None:
        """Ask each of this worker's partitions to forget its command records older than
        the window (through the log: every replica and replay deletes the same ones)."""
        if app.rebalancing:
            return
        cutoff = datetime.now(UTC) - timedelta(seconds=settings.command_record_window_s)
        for tp in sorted(app.consumer.assignment()):
            if tp.topic != settings.commands_topic:
                continue
            region = sweep_region(settings, tp.partition)
            cmd = ExpireRecords(region=region, cutoff=cutoff, issued_by="worker")
            await commands.send(key=region.encode(), value=encode(cmd), partition=tp.partition)

    @app.page("/dispatch/batches/")
    async def batches_page(web: Any, request: Any) -> Any:
        """How the agent has batched the commands so far, and the collector's pauses
        (tests, ops and the fleet bench)."""
        counts = {
            **processor.counts(),
            "lease_age_s": lease.age(),
            "late_writes_skipped": table.epochs.skipped,  # by restores (streams.epochs)
            "late_keys_rewritten": table.epochs.rewritten,  # by this owner, over them
        }
        return web.json({**counts, **(gc_pauses or GcPauses()).as_json()})

    @app.page("/dispatch/records/")
    async def records_page(web: Any, request: Any) -> Any:
        """How many command records this worker's table holds (tests and ops)."""
        keys = [key for key in list(table.keys()) if key.startswith("c:")]
        return web.json({"command_records": len(keys)})

    @app.timer(interval=settings.archive_sweep_s, name="archive_closed")
    async def archive_closed() -> None:
        """Ask the agent to archive each region's long-closed emergencies (issue 16): the
        sweep is a command, so the decision (and its cutoff, from the record time) is made
        in the region's order of commands and every reader sees it as events."""
        if app.rebalancing or not app.consumer.assignment():
            return
        at_ms = int(time.time() * 1000)
        for region in state.sweep_regions(settings.regions):
            cmd = ArchiveClosed(
                command_id=archive_command_id(region, at_ms),
                region=region,
                after_s=settings.archive_after_s,
                forget_after_s=settings.archive_memory_s,
                issued_by="worker",
            )
            await commands.send(key=region.encode(), value=encode(cmd))

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

    stall = progress.StallGuard(settings.worker_stall_timeout_s, settings.commands_topic)

    @app.timer(interval=readiness.PROBE_INTERVAL_S, name="watch_progress")
    async def watch_progress() -> None:
        await stall.check(app, broker_reachable=broker.unreachable() is None)

    @app.page("/dispatch/ready/")
    async def ready_page(web: Any, request: Any) -> Any:
        """200 while the worker owns its partitions, moves them (streams.progress), has
        recovered its table and hears from the broker; else 503 with the reason."""
        assigned = sorted(
            tp.partition for tp in app.consumer.assignment() if tp.topic == settings.commands_topic
        )
        reason: str | None
        if not assigned:
            reason = "no commands partition assigned"
        elif stall.reason is not None:
            reason = stall.reason
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


async def ready_batches(stream: faust.Stream, max_: int) -> AsyncIterator[list[Any]]:
    """The stream's events in batches of up to ``max_``, unacked (``stream.ack`` each).

    Faust's ``noack_take`` without its clock: the agent waits for a first event, then takes
    every event already in the stream's queue (the stream moves one per turn of the event
    loop) and stops at the first turn that finds the queue empty, or at ``max_``. A lone
    command goes at once (no window to wait out); a backlog comes in full batches however
    little of the CPU the worker gets. While the agent applies a batch, the stream holds
    the next events back, as in ``noack_take``. Uses Faust's stream internals as
    ``noack_take`` does (processors, the passive drainer, ``enable_acks``)."""
    buffer: list[Any] = []
    arrived = asyncio.Event()  # the buffer got an event
    open_ = asyncio.Event()  # the stream may add to the buffer (not while a batch is out)
    open_.set()
    channel: Any = stream.channel
    queue = getattr(channel, "queue", None)

    async def add_to_buffer(value: Any) -> Any:
        while not open_.is_set():
            # mode types the waitable as its own Event; any object with .wait() works
            if await stream.wait_for_stopped(open_):  # type: ignore[arg-type]
                return value
        event = stream.current_event
        if event is None:
            raise RuntimeError("ready_batches: an event without current_event")
        buffer.append(event)
        arrived.set()
        if len(buffer) >= max_:
            open_.clear()  # never more than max_ in a batch
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # the agent acks each event once its effects are queued
    stream.add_processor(add_to_buffer)
    # as noack_take does: the stream drains its channel in the background
    stream._enable_passive(cast(ChannelT, aiter(stream.channel)))
    try:
        while not stream.should_stop:
            if not buffer:
                arrived.clear()
                if await stream.wait_for_stopped(arrived):  # type: ignore[arg-type]
                    break
                continue
            turns = 0
            while len(buffer) < max_ and queue is not None and not queue.empty():
                turns += 1
                if turns > 4 * max_:
                    break  # the stream is not moving what is queued: go with what is here
                await asyncio.sleep(0)
            open_.clear()
            batch = buffer[:]
            buffer.clear()
            try:
                yield batch
            finally:
                open_.set()
    finally:
        stream.enable_acks = acks
        stream._processors.remove(add_to_buffer)


def changelog_configs(settings: Settings) -> dict[str, str]:
    return {
        "segment.ms": str(settings.changelog_segment_ms),
        "delete.retention.ms": str(settings.changelog_delete_retention_ms),
    }


def sweep_region(settings: Settings, partition: int) -> str:
    """A region placed on ``partition`` (the sweep's key), or a name saying the partition."""
    for region in settings.regions:
        if partition_for(region, settings.partitions, settings.regions) == partition:
            return region
    return f"partition-{partition}"


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Run the worker until Ctrl-C / SIGTERM (Faust's worker installs the handlers)."""
    pauses = GcPauses()
    app = create_faust_app(settings, gc_pauses=pauses)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    pauses.install()  # after the app, the road graph and the worker are built
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
