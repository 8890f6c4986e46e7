"""What the worker does with a batch of commands: decode, record check, decide, dead-letter,
send the batch's writes and events, ack.

``decide_command`` is one command against the state (any mapping, so tests need no broker);
``BatchProcessor`` runs a batch the agent took (``streams.app``) through it and sends what
it produced; ``ChangelogTable`` is the table those writes wait in.

Crash safety. Faust is at-least-once: it flushes the producer before committing a source
offset, so after a crash the commands after the last committed offset run again, against
a table that may already hold some of their effects. For every command we therefore write
its *record* (the events and entity states it produced) to the table FIRST, then the
entity states, then publish the events. All of it goes to one changelog partition, in that
order, so after a crash the table holds, for the command that was cut off, either nothing
(it runs again against exactly the state it first saw, with the record's timestamp as
``now``, so it decides the same) or its record (we re-store the record's entity states,
which never overwrite newer versions, and re-publish its events with the same event ids).

A client's retry of a command id is a different case, told apart by where the record came
from. A record names the (partition, offset) of the command message that made it. On a
record hit, the same message again (same partition, same offset) is a redelivery after a
crash: record applied again, events re-published, as above. A LATER message of the same
partition (a client's retry, or the movement timer sending a move again) answers with one
``command_repeated`` event naming the recorded events, and re-publishes nothing, because
those events are already safe: the record's own message is earlier in the same partition,
so either its offset was committed (Faust flushed the producer, events included, before
committing it) or it was not, and then it is redelivered before this one, hits its record
with its own offset and re-publishes them. Anything else (a record from another partition,
or from a later offset, read during a replay) is treated as a redelivery, the old, safe
way. The repeat writes nothing to the table and applies nothing; its event id
(``<command_id>:repeated-<offset>``) and time come from the message, so a crash replay of
the retry makes the same event again. Twenty retries of one dispatch: one
``emergency_updated`` and twenty small ``command_repeated`` in the log, none on any
dashboard (``schemas.events.EventBase.live``).

GPS fixes (``unit_position`` with lat/lon, ``decide_fix``) have no record (issue 16: a
fleet sends one per unit a second, and the record was most of a fix's cost). A fix is
idempotent by itself: it is decided at its own time (``issued_at``, not the message's), is
applied only if newer than the unit's ``updated_at``, and leaves that time in it. Its
effects are the unit entry and one ``unit_location`` (event id ``<command_id>:0``, the
unit's new version). After a crash the fix is redelivered and finds: nothing of it (the
unit as it first saw it: decided again into the same texts, event id and version); its own
state (``updated_at`` its time, its position: the changelog write got out, the event maybe
not; the event is made again from that state, same id and version); or a newer state (a
later command of the same partition got its write out; the fix is stale and publishes
nothing: that later state supersedes it and reaches readers with its own event, re-made
the same way or from its record). A retry of a fix that is still the unit's latest makes
that same event again: a second copy is harmless, as consumers keep one per event id and
apply a unit's state only for a newer version (``schemas.projection``); a retry of an
older fix is stale. So a fix never moves a unit twice, and a unit never moves back to an
older fix. The times compared are the unit's (``issued_at``) against the producers' of other
commands (a status change stamps the message time): a unit clock running ahead of them can
let a fix pass a later status change, as every fix did before. Fix ids are not remembered
(no reused-id check). Within a batch a later fix of
the same unit supersedes an earlier one only by this rule; the batch is not thinned out
(a batch holds what had arrived while the last one was applied, up to BATCH_MAX 500: about
half a second of a 1,000-unit fleet's fixes, so it rarely holds two fixes of one unit).

Records expire (``Settings.command_record_window_s``): an ``expire_records`` command, sent
by the worker's sweep timer to each of its partitions, deletes that partition's records
stamped before its cutoff. Commands are the only thing that changes the table, so every
replica and every replay deletes the same records at the same point of the partition. A
retry after the window finds no record and is decided as a new command (README).

How the writes leave (``ChangelogTable``): the agent takes the commands in batches
(``streams.app.ready_batches``: Faust acks nothing by itself) and decides them one after the other
against the table; their table writes are kept in write order and, once a part of the batch
is decided (``FLUSH_AFTER_S`` of deciding or ``FLUSH_MAX`` commands), sent with one awaited
``producer.send`` each to the changelog partition of the command that made them, then that
part's events; only then are the part's messages acked. Parts finish in order (``_Chain``),
and the next part is decided meanwhile (against the table, which already holds the earlier
parts' writes, as one command of a batch sees the writes of the one before it). A
command's record still precedes its entity states in the changelog (write order), every
piece is queued in the one aiokafka producer before its offset is acked and so before it
can be committed, and Faust flushes that producer before committing, so the
argument above holds unchanged: a crash mid-batch leaves each command with its record or
with nothing, as before. A part's events (and the saga's commands) leave only once the
broker has acknowledged its table writes and those of the parts before it: the order of
writes to different topics is not kept by Kafka, and a decision is not always a function
of the table alone (mutual aid ranks other regions' units from the fleet view, which a
replay may see newer), so an event in the log must imply its record in the changelog; a
replay then finds the record and re-publishes the same events instead of deciding again.
It costs one acknowledgement round trip per part, overlapped with deciding the next part
(one per batch is waited out).
Two more ways a replay decided differently were found by
``tests/streams/test_crash_recovery.py`` (one unit version dispatched to two emergencies)
and are closed in ``streams.state``: a crash between a unit's ``u:`` and ``r:`` writes left
the region's list without it (``put_unit`` now finishes lists for a not-newer unit), and
the fleet view, ahead of a table that lost writes, supplied a home-region unit (home units
now come from the table alone, ``DispatchState.fleet``). Batches share Faust's
fixed per-batch costs and the producer awaits; Faust's per-message stream cost remains.
Each JSON text is made once (``streams.state.Encoded``): the entity's text is the same
string in its record, its table entry and its event.

We chose this over ``processing_guarantee="exactly_once"``: Faust's transactional mode
needs one producer per partition and fences on rebalance, adds a commit round-trip per
transaction, and would still not cover a client retrying a command id. The record makes
redelivery harmless whatever its cause, and consumers dedupe by event id anyway.

One owner at a time. The record makes a second *run* of a command harmless, not a second
worker deciding the same partition at the same time from a table of its own: their events
diverge (the paused-node cluster case once ended with a unit ON_SCENE for an emergency that
did not hold it). The group gives a partition one owner, but a member the group dropped
goes on fetching until it hears so, and only transactions fence it on the broker's side. So
the worker fences itself (``streams.lease``): a part's table writes are sent, and its
events published, only while the worker surely still holds its group membership for the
generation the commands were fetched in. When it does not, the batch is let go
(``BatchProcessor._let_go``): nothing more of it is sent or published, the table is put
back as it was before the writes whose events did not leave (``ChangelogTable.undo``), its
messages and the rest of their partitions' messages of that generation go back unacked, and
the group is asked to rebalance; the commands come again to whoever owns them then. Table
writes it had sent may still reach the changelog after the next owner has read it; each
write carries its owner's epoch, and a restore skips a write below the epoch it has read
before it on the partition (``streams.epochs``; the header costs ~0.05 µs a write).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import faust
from faust.streams import current_event

from schemas import Command, SchemaError, UnitPosition, decode_command
from schemas.commands import ExpireRecords
from schemas.events import CommandRepeated
from streams import deadletters
from streams.decisions import Outcome, decide
from streams.epochs import EPOCH_HEADER, EPOCH_KEY, EpochFence, encode_epoch
from streams.routing import Router
from streams.state import DispatchState, command_fingerprint, encoded, reused_id_outcome

log = logging.getLogger(__name__)


def decide_command(
    state: DispatchState,
    router: Router,
    tick_s: float,
    value: bytes,
    timestamp: float,
    source: tuple[int, int] | None = None,
    partition_of: Callable[[str], int] | None = None,
) -> Outcome | None:
    """Decide the command ``value`` (a record's bytes, written at ``timestamp``, seconds,
    read at ``source``: partition, offset) against ``state`` and write its record, then its
    effects, to the table. Returns what to publish, or None when nothing happened. Raises
    ``SchemaError`` if it cannot be decoded.

    The record check comes first (crash safety, above): a command id already recorded is a
    redelivery (its record is applied again and its events re-published), a retry (a later
    message: one ``command_repeated``) or, under another fingerprint, a reused id, refused
    and not recorded (issue 11). ``expire_records`` deletes the expired records of
    ``source``'s partition (``partition_of`` places records older than their ``source``)."""
    command = decode_command(value)
    if isinstance(command, ExpireRecords):
        if source is not None:
            expired = state.expire_records(
                source[0], command.cutoff.timestamp(), partition_of or (lambda region: source[0])
            )
            log.info("expired %d command records of partition %d", expired, source[0])
        return None
    if isinstance(command, UnitPosition) and command.lat is not None:
        return decide_fix(state, router, tick_s, command)
    is_tick = isinstance(command, UnitPosition)  # a fix (with lat/lon) went above
    key = state.record_key(command)
    fingerprint = command_fingerprint(command)
    seen = state.record(key, command.command_id)
    if seen is not None:
        if not is_tick and not state.same_command(key, fingerprint):
            # Another command under a used id (issue 11): refused, and not recorded.
            return reused_id_outcome(command, fingerprint)
        if is_later_message(state.recorded_source(key), source):
            # A retry (above): its outcome's events are safe already; answer, copy nothing.
            return None if is_tick else repeated_outcome(command, seen, source, timestamp)
        # Redelivered after a crash: finish what the record says.
        state.apply(seen)
        return seen
    now = datetime.fromtimestamp(timestamp, UTC)
    seen = decide(command, state, router, now, tick_s)
    if not seen.events and not seen.commands:
        return None  # a stale tick or a repeated registration: nothing happened
    state.put_record(key, command.command_id, seen, fingerprint, source, timestamp)
    state.apply(seen)
    return seen


def decide_fix(
    state: DispatchState, router: Router, tick_s: float, fix: UnitPosition
) -> Outcome | None:
    """A GPS fix: no record, no fingerprint (crash safety, above). It is decided at its own
    time, so deciding it again against the state it first saw makes the same texts."""
    seen = decide(fix, state, router, fix.issued_at, tick_s)
    if not seen.events:
        return None  # older than the unit's state: superseded, or a retry of an applied fix
    for unit, text in zip(seen.units, encoded(seen).units, strict=True):
        state.put_moved_unit(unit, text)
    return seen


def is_later_message(recorded: tuple[int, int] | None, source: tuple[int, int] | None) -> bool:
    """Whether ``source`` is a later message of the partition whose message made the record."""
    return (
        recorded is not None
        and source is not None
        and recorded[0] == source[0]
        and recorded[1] < source[1]
    )


def repeated_outcome(
    command: Command, seen: Outcome, source: tuple[int, int] | None, timestamp: float
) -> Outcome:
    """The answer to a retry: one ``command_repeated`` naming the recorded events."""
    assert source is not None
    event = CommandRepeated(
        event_id=f"{command.command_id}:repeated-{source[1]}",
        command_id=command.command_id,
        region=command.region,
        occurred_at=datetime.fromtimestamp(timestamp, UTC),
        command_kind=command.kind,
        event_ids=[e.event_id for e in seen.events],
    )
    return Outcome(events=[event])


_ABSENT = object()  # a key the table did not hold before a write


class Fenced(Exception):
    """The worker no longer surely owns the partition of a command in the batch
    (``streams.lease``): nothing more of the batch may leave."""


class ChangelogTable(faust.Table):
    """A Faust table whose writes reach its changelog through ``send_unsent()``.

    Faust's own path sends each write as a ``FutureMessage`` through the ``ProducerBuffer``
    (a queue drained one message per task switch, with per-message serializer, channel and
    callback layers), which cost more than our whole command. Here a write is kept, with
    the partition of the command being processed, until the agent awaits
    ``send_unsent()``: one ``producer.send`` per write, in write order, straight to the
    aiokafka producer. The bytes are those Faust would write (JSON key, raw value), so
    Faust's recovery reads them as usual. Safe for at-least-once because Faust flushes the
    producer before it commits an offset, and a command's message is acked only after
    ``send_unsent()`` queued its writes and the broker acknowledged them (the returned
    futures, ``BatchProcessor``). Only for the memory store: the
    skipped ``_on_changelog_sent`` callback records offsets for RocksDB alone.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsent: list[tuple[int, str, Any]] = []
        # (key, value before) of every write since ``take_undo``: what ``roll_back`` puts
        # back if the writes' effects may not leave (``streams.lease``)
        self.undo: list[tuple[str, Any]] = []
        # the partition of the command being processed, set by the agent (batches)
        self.partition: int | None = None
        # owner epochs (``streams.epochs``): what a restore skips, and each write's header
        self.epochs = EpochFence()
        self.owned: dict[int, list[tuple[str, bytes]]] = {}  # partition -> epoch header

    def on_key_set(self, key: Any, value: Any) -> None:
        partition = self.partition
        if partition is None:
            event = current_event()
            if event is None:
                raise RuntimeError(f"table {self.name} written outside the commands agent")
            partition = event.message.partition
        self.undo.append((key, self.data.get(key, _ABSENT)))  # called before the write
        self.unsent.append((partition, key, value))

    def on_key_del(self, key: Any) -> None:
        # a tombstone (value None), sent like a write: the compacted changelog drops the key
        self.on_key_set(key, None)

    def take_undo(self) -> list[tuple[str, Any]]:
        """The undo entries of the writes since the last call (see ``roll_back``)."""
        undo, self.undo = self.undo, []
        return undo

    def roll_back(self, undo: list[tuple[str, Any]]) -> None:
        """Put back the values ``undo``'s writes replaced, latest first, in memory only: the
        table as it was before them (their changelog records were never sent, or their
        effects were not published and the commands come again)."""
        for key, before in reversed(undo):
            if before is _ABSENT:
                self.data.pop(key, None)
            else:
                self.data[key] = before

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """A restore (or a standby's read) of the changelog, minus the late writes of an
        earlier owner and the epoch markers (``streams.epochs``)."""
        super().apply_changelog_batch(list(self.epochs.admit(batch)))

    async def on_recovery_completed(self, active_tps: set[Any], standby_tps: set[Any]) -> None:
        """Take an epoch for each changelog partition this worker now owns and queue its
        marker ahead of the partition's writes, then write again each key whose last
        record the restore skipped as an earlier owner's late write, so compaction keeps
        this owner's value of it (``streams.epochs``). Not awaited: a marker to a silent
        leader must not hold up the partitions whose leaders answer."""
        await super().on_recovery_completed(active_tps, standby_tps)
        self.owned = {}
        for tp in active_tps:
            header = self.take_epoch(tp.partition)
            late_keys = self.epochs.late_keys.pop(tp.partition, set())
            writes: list[tuple[str, Any]] = [(EPOCH_KEY, header[0][1])]
            writes += [(key, self.data.get(key)) for key in sorted(late_keys)]
            try:
                for key, value in writes:
                    sent = await self._send(tp.topic, tp.partition, key, value, header)
                    asyncio.ensure_future(sent).add_done_callback(marker_sent)
            except Exception as exc:  # the epoch still rises; the generation breaks ties
                log.warning(
                    "epoch marker (or a key written again) of changelog partition %d not sent: %r",
                    tp.partition,
                    exc,
                )
                continue
            if late_keys:
                self.epochs.rewritten += len(late_keys)
                log.info(
                    "changelog partition %d: wrote %d keys again over late writes",
                    tp.partition,
                    len(late_keys),
                )

    def take_epoch(self, partition: int) -> list[tuple[str, bytes]]:
        """A new epoch on ``partition`` for this owner: the header its writes carry."""
        epoch = self.epochs.take(partition, self.app.consumer_generation_id)
        header = self.owned[partition] = [(EPOCH_HEADER, encode_epoch(epoch))]
        return header

    async def send_unsent(self) -> list[Awaitable[Any]]:
        """Queue the kept writes in the producer, in write order; their acknowledgements.
        The caller awaits them all before the events of the commands that made them leave
        (see "How the writes leave"): an event in the log implies its command's record in
        the changelog."""
        if not self.unsent:
            return []
        topic = self.changelog_topic.get_topic_name()
        unsent, self.unsent = self.unsent, []
        return [
            await self._send(
                topic,
                partition,
                key,
                value,
                self.owned.get(partition) or self.take_epoch(partition),
            )
            for partition, key, value in unsent
        ]

    async def _send(
        self, topic: str, partition: int, key: str, value: Any, header: list[tuple[str, bytes]]
    ) -> Awaitable[Any]:
        """Queue one changelog record, in the bytes Faust writes (JSON key, raw value; a
        tombstone for ``None``); its acknowledgement."""
        raw = value if value is None or isinstance(value, bytes) else value.encode()
        return await self.app.producer.send(
            topic, json.dumps(key).encode(), raw, partition, None, header
        )


def marker_sent(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.warning(
            "an epoch marker or a key written again was not acknowledged: %r", sent.exception()
        )


# A batch is decided in parts (issue 16, the fleet bench's hops): once FLUSH_AFTER_S of
# deciding or FLUSH_MAX commands have gone by, that part's table writes are queued and its
# events leave as soon as the broker has acknowledged them, while the rest of the batch is
# decided. Before, every event of a batch waited for the whole batch: under the fleet's 1,000
# fixes a second a batch held up to 500 commands and took ~300 ms to decide on the shared
# core (``batch decide ms``), so a report at its front waited for the hundreds of fixes and
# the dispatches behind it, and its event left only after all of them.
FLUSH_AFTER_S = 0.005
FLUSH_MAX = 100
# While deciding, the loop gets a turn at least this often, so acknowledgements are read and
# parts finish during the batch rather than after it (each turn costs a few microseconds).
TURN_EVERY_S = 0.0005


class _Chain:
    """The parts of one batch, in order: each part's writes acknowledged, then its events
    published and its messages acked, never before the parts ahead of it have done the
    same (so events leave in command order, and every write ahead of an event is
    acknowledged before it). ``wait`` until all have; a failure is raised there.

    A part publishes only if ``holds()`` still says so once its writes are acknowledged
    (``streams.lease``); else it raises ``Fenced``, and so does every part behind it. Each
    part keeps the undo entries of its writes until it has published (``undos``)."""

    def __init__(
        self, phases: dict[str, float], clock: Callable[[], float], holds: Callable[[], bool]
    ) -> None:
        self.phases = phases
        self.clock = clock
        self.holds = holds
        self.last: asyncio.Future[None] | None = None
        self.undos: list[list[tuple[str, Any]]] = []

    async def flush(
        self,
        delivered: list[Awaitable[Any]],
        finish: Callable[[], Awaitable[None]],
        undo: list[tuple[str, Any]],
    ) -> None:
        ahead = self.last
        self.undos.append(undo)

        async def part() -> None:
            if ahead is not None:
                await ahead
            started = self.clock()
            await asyncio.gather(*delivered)
            written = self.clock()
            if not self.holds():
                raise Fenced("the group lease ran out while the writes were acknowledged")
            await finish()
            undo.clear()  # its effects are out: nothing of it to take back
            self.phases["changelog_s"] += written - started
            self.phases["publish_s"] += self.clock() - written

        self.last = asyncio.ensure_future(part())

    async def wait(self) -> None:
        if self.last is not None:
            await self.last

    async def settle(self) -> BaseException | None:
        """Wait until every part has published or failed; the failure, if not ``Fenced``."""
        if self.last is None:
            return None
        await asyncio.wait([self.last])
        failure = None if self.last.cancelled() else self.last.exception()
        return None if isinstance(failure, Fenced) else failure

    def cancel(self) -> None:
        # the last part awaits the one ahead of it, so cancelling it cancels them all
        if self.last is not None:
            self.last.cancel()


class BatchProcessor:
    """Applies the batches of the commands agent: each command decided (or dead-lettered)
    in order, then the batch's table writes and events sent, then its messages acked."""

    def __init__(
        self,
        app: faust.App,
        table: ChangelogTable,
        router: Router,
        tick_s: float,
        events_topic: str,
        dead_letter_topic: str,
        partition_of: Callable[[str], int] | None = None,
        commands_topic: str | None = None,
        units_topic: str | None = None,
        state: DispatchState | None = None,
        holds: Callable[[int], bool] | None = None,
        on_fenced: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        # Whether the worker surely still owns what it fetched in a generation, and what to
        # do once it does not (given that generation; ``streams.lease``); without them
        # (tools, tests) it always does.
        self.holds = holds or (lambda generation: True)
        self.on_fenced = on_fenced
        self.partition_of = partition_of  # a region's partition, for records that omit it
        self.table = table
        self.state = state or DispatchState(table)
        # Mutual aid (issue 15): where the saga's next commands go, and the compacted topic
        # of unit states every worker's fleet view reads (``streams.fleetview``).
        self.commands_topic = commands_topic
        self.units_topic = units_topic
        self.router = router
        self.tick_s = tick_s
        self.events_topic = events_topic
        self.dead_letter_topic = dead_letter_topic
        self.batches = 0  # batches processed, and their commands: the agent's batching
        self.commands = 0
        self.largest = 0
        # where a batch's time goes (seconds, summed over batches; the fleet bench reads
        # them): deciding its commands, its table writes until the broker acknowledged
        # them, its events and acks
        self.phases = {"decide_s": 0.0, "changelog_s": 0.0, "publish_s": 0.0}
        self.slowest_decide_s = 0.0  # the longest single command decision so far
        self.fenced = 0  # batches let go because the lease ran out

    def counts(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "commands": self.commands,
            "largest": self.largest,
            **{name: round(seconds, 6) for name, seconds in self.phases.items()},
            "slowest_decide_s": round(self.slowest_decide_s, 6),
            "fenced": self.fenced,
        }

    async def process(
        self, batch: Iterable[Any], ack: Callable[[Any], Awaitable[Any]], held: set[tuple[int, int]]
    ) -> None:
        """Apply one batch of stream events and ``ack`` those applied or dead-lettered.

        ``held`` holds the (partition, generation) whose dead letter could not be sent
        before the partition was revoked: their later messages are released unacked too
        (``streams.deadletters``); the agent keeps it from batch to batch."""
        batch = list(batch)
        self.batches += 1
        self.commands += len(batch)
        self.largest = max(self.largest, len(batch))
        generation = batch[0].message.generation_id if batch else 0
        chain = _Chain(self.phases, time.perf_counter, lambda: self.holds(generation))
        try:
            await self._decide_in_parts(batch, ack, held, chain, generation)
        except Fenced as fenced:
            await self._let_go(batch, held, chain, fenced)
        except BaseException:
            chain.cancel()  # unacked: those commands come again, and find their records
            raise

    async def _let_go(
        self, batch: list[Any], held: set[tuple[int, int]], chain: _Chain, why: Fenced
    ) -> None:
        """The lease ran out (``streams.lease``): once the parts ahead have published or
        stopped, send and publish nothing more of the batch, put the table back as it was
        before the writes whose events did not leave, give back the batch's messages
        unacked (with the rest of their partitions' messages of this generation: ``held``),
        and ask the group to rebalance. The commands come again, to whoever owns them."""
        failure = await chain.settle()
        table = self.table
        table.unsent = []
        for undo in reversed([*chain.undos, table.take_undo()]):
            table.roll_back(undo)
        for message in batch:  # (an acked one is no longer held: releasing it does nothing)
            held.add((message.message.partition, message.message.generation_id))
            deadletters.release(self.app, message)
        self.fenced += 1
        log.warning(
            "%s: %d commands let go unacked and the table put back; asking for a rebalance",
            why,
            len(batch),
        )
        if self.on_fenced is not None:
            await self.on_fenced(batch[0].message.generation_id)
        if failure is not None:
            raise failure  # a part failed otherwise: the agent fails, as it did before

    async def _decide_in_parts(
        self,
        batch: list[Any],
        ack: Callable[[Any], Awaitable[Any]],
        held: set[tuple[int, int]],
        chain: _Chain,
        generation: int,
    ) -> None:
        app, table, clock = self.app, self.table, time.perf_counter
        outcomes: list[Outcome] = []
        done: list[Any] = []  # applied or dead-lettered: only these are acked
        deciding = 0.0  # seconds spent deciding the current part
        turned = clock()  # when the loop last got a turn
        for message in batch:
            source = (message.message.partition, message.message.generation_id)
            if source in held:
                deadletters.release(app, message)
                continue
            if not done and not self.holds(generation):  # a part's first command
                raise Fenced("the group lease ran out before the commands were decided")
            table.partition = message.message.partition
            before = clock()
            try:
                seen = await self.apply_one(message)
            except deadletters.DeadLetterNotSent:
                held.add(source)
                deadletters.release(app, message)
                continue
            finally:
                table.partition = None
                took = clock() - before
                deciding += took
                self.phases["decide_s"] += took
                self.slowest_decide_s = max(self.slowest_decide_s, took)
            done.append(message)
            if seen is not None:
                outcomes.append(seen)
            if deciding >= FLUSH_AFTER_S or len(done) >= FLUSH_MAX:
                # Part of the batch decided: its writes go now and its events once they are
                # acknowledged, while the rest of the batch is decided (``_Chain``).
                if not self.holds(generation):
                    raise Fenced("the group lease ran out before the writes were sent")
                await chain.flush(
                    await table.send_unsent(), self._finish(outcomes, done, ack), table.take_undo()
                )
                outcomes, done, deciding = [], [], 0.0
            if clock() - turned >= TURN_EVERY_S:
                # A turn of the event loop for the producer and the parts waiting on it: an
                # acknowledgement takes several (response read, futures set, the part woken)
                await asyncio.sleep(0)
                turned = clock()
        if done or table.unsent:  # (a batch of ``held`` messages only: nothing to send)
            if not self.holds(generation):
                raise Fenced("the group lease ran out before the writes were sent")
            await chain.flush(
                await table.send_unsent(), self._finish(outcomes, done, ack), table.take_undo()
            )
        await chain.wait()

    def _finish(
        self, outcomes: list[Outcome], done: list[Any], ack: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[], Awaitable[None]]:
        """Publish ``outcomes``, then ack ``done``: what follows a part's acknowledged writes."""

        async def finish() -> None:
            for seen in outcomes:
                await self.publish(seen)
            for message in done:
                await ack(message)

        return finish

    async def apply_one(self, message: Any) -> Outcome | None:
        """Decide one command; its table writes are kept in ``table.unsent``. A command that
        cannot be applied is dead-lettered (``streams.deadletters``) before it counts as done."""
        try:
            return decide_command(
                self.state,
                self.router,
                self.tick_s,
                message.value,
                message.message.timestamp,
                (message.message.partition, message.message.offset),
                self.partition_of,
            )
        except SchemaError as exc:
            log.warning(
                "undecodable command at %s[%s]@%s sent to %s: %s",
                message.message.topic,
                message.message.partition,
                message.message.offset,
                self.dead_letter_topic,
                exc,
            )
            error = str(exc)
        except Exception as exc:
            log.exception(
                "command at %s[%s]@%s failed; sent to %s",
                message.message.topic,
                message.message.partition,
                message.message.offset,
                self.dead_letter_topic,
            )
            error = f"{type(exc).__name__}: {exc}"
        await deadletters.forward(self.app, self.dead_letter_topic, message, error)
        return None

    async def publish(self, outcome: Outcome) -> None:
        producer = self.app.producer
        enc = encoded(outcome)
        for event, text in zip(outcome.events, enc.events, strict=True):
            await producer.send(
                self.events_topic, event.region.encode(), text.encode(), None, None, None
            )
        # Mutual aid (issue 15). The saga's next steps are in the record like the events,
        # so a redelivered command re-sends them under the same command ids.
        if self.commands_topic is not None:
            for command, text in zip(outcome.commands, enc.commands, strict=True):
                await producer.send(
                    self.commands_topic, command.region.encode(), text.encode(), None, None, None
                )
        if self.units_topic is not None:
            for unit, text in zip(outcome.units, enc.units, strict=True):
                await producer.send(
                    self.units_topic, unit.id.encode(), text.encode(), None, None, None
                )
