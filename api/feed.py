"""What one live client receives: a start (snapshot, or resume), then the live messages.

Resume rule: the client's ``Last-Event-ID`` is a log position (see ``schemas.position``).
- none given: a ``snapshot`` of current state;
- a position we still have in the ring: every message after it, from memory;
- an older position still in Kafka: the records after it, read from Kafka by offset;
- a position in the log that this read model has not reached yet (another replica served
  it, or this one is a moment behind): wait until it has (``api_resume_wait_s``), then as
  above; if it does not get there in time, ``PositionNotReached`` (the transport closes
  and the client comes back with the same id). Never a reset snapshot behind the client;
- anything else (not ours, beyond the log end, or before the log start because retention
  or deleteRecords removed it): a fresh ``snapshot`` with ``"reset": true``.

A read model that is still bootstrapping serves no feed at all (``ReadModel.require_ready``
in the transports): its snapshot would be a prefix of the log, behind a reconnecting client.

The race that matters: the client is subscribed to the hub *before* the start is
computed, in the same synchronous step that reads the read model's position, so nothing
falls between the start and the live messages. Duplicates cannot slip in either: the feed
keeps the client's own position (per partition, the next offset it has seen) and drops
any queued message below it, which is also what makes a resync snapshot safe.

Unit positions come as frames (``api.conflate``): live ones from the hub, shared by the
clients of one filter; a resume backlog's own, folded here between its status events. A
frame reaches a position on several partitions at once (``LiveMessage.upto``); the feed
merges it into the client's position and drops a frame its start already covered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError as AioKafkaError

from api.broadcast import CLOSE, RESYNC, Client, LiveMessage, QueueItem, event_message, with_id
from api.conflate import ResumeFold
from api.readmodel import ReadModel, events_consumer
from schemas.codec import SchemaError, decode_event
from schemas.position import Position, format_position

log = logging.getLogger(__name__)

KAFKA_REPLAY_TIMEOUT_S = 30.0


class PositionGone(Exception):
    """The records after a position are no longer in the log."""


class PositionNotReached(Exception):
    """The client's position is in the log, but the read model has not reached it in time."""


class Feed:
    """One client's feed: subscribed to the hub, then its start, then its buffer.

    ``start`` yields the snapshot or resume backlog; after it, ``select`` turns each batch
    the client's buffer hands over into what to write, keeping the client's position.
    ``stop`` unsubscribes (always call it, in a ``finally``).
    """

    __slots__ = ("client", "model", "position")

    def __init__(self, model: ReadModel, client: Client) -> None:
        self.model = model
        self.client = client
        self.position: list[int] = []

    async def start(self, last_event_id: str | None) -> AsyncGenerator[LiveMessage, None]:
        """The snapshot or resume backlog, as this client may see it (``LiveMessage.for_units``
        for a unit token)."""
        async with aclosing(self._start(last_event_id)) as messages:
            if self.client.redact:
                async for message in messages:
                    yield message.for_units()
            else:
                async for message in messages:
                    yield message

    async def _start(self, last_event_id: str | None) -> AsyncGenerator[LiveMessage, None]:
        model, client = self.model, self.client
        last_event_id = last_event_id or None  # an empty id is no id
        since = _resume_point(last_event_id, model.partitions)
        if since is not None and not model.has_reached(since):
            since = await _catch_up(model, since)  # before subscribing: nothing to buffer
        # subscribe, read the position and build the start in one synchronous step
        model.hub.subscribe(client)
        current = model.position
        if since is not None:
            since = Position(since).pad(len(current))  # the topic may have grown while we waited
        if last_event_id is None or since is None:
            reset = last_event_id is not None
            first = model.snapshot(client.regions, reset=reset, redact=client.redact)
            if last_event_id is not None:
                log.info(
                    "resume id %r is not a position we have; sending a reset snapshot",
                    last_event_id[:64],
                )
            self.position = list(current)
            yield first
            return
        position = self.position = list(since)
        backlog = model.ring.since(since)
        # a resume backlog's positions are conflated too, between its status events
        fold = ResumeFold(client, model.settings.api_position_frames_per_s > 0)
        if backlog is not None:
            for message in backlog:
                position[message.partition] = message.offset + 1
                if fold.wants(message):
                    for out in fold.push(_as_seen_from(message, position)):
                        yield out
            for out in fold.end():
                yield out
        else:
            try:
                async with aclosing(replay_from_kafka(model, since, current)) as replay:
                    async for message in replay:
                        if fold.wants(message):
                            for out in fold.push(message):
                                yield out
                for out in fold.end():
                    yield out
            except PositionGone:
                log.info(
                    "resume position %s is older than the log; reset snapshot",
                    format_position(since),
                )
                self.position = position = list(model.position)
                yield model.snapshot(client.regions, reset=True, redact=client.redact)
        for p, offset in enumerate(current):
            position[p] = max(position[p], offset)

    def select(self, items: list[QueueItem]) -> list[QueueItem]:
        """What to write for a batch from the buffer, in order: the messages this client
        has not seen yet, a reset snapshot in place of ``RESYNC``, ``PING``; a ``CLOSE``
        ends the batch (and is kept, last)."""
        out: list[QueueItem] = []
        position = self.position
        redact = self.client.redact
        for item in items:
            if item.__class__ is LiveMessage:
                if item.upto is not None:  # a frame of positions, on several partitions
                    frame = self._frame(item)
                    if frame is not None:
                        out.append(frame)  # positions: no reporter in them
                    continue
                partition = item.partition
                if partition >= len(position):
                    position.extend([0] * (partition + 1 - len(position)))
                if item.offset < position[partition]:
                    continue  # already in the snapshot or backlog this client got
                position[partition] = item.offset + 1
                out.append(item.for_units() if redact else item)
            elif item is RESYNC:
                self.model.metrics.resyncs.inc()
                self.position = position = list(self.model.position)
                out.append(self.model.snapshot(self.client.regions, reset=True, redact=redact))
            else:
                out.append(item)
                if item is CLOSE:
                    break
        return out

    def _frame(self, frame: LiveMessage) -> LiveMessage | None:
        """``frame`` as this client takes it: None if its snapshot or backlog already
        reached every partition the frame reaches; else under the client's own position
        after it (the frame's id unless the client had got further on some partition)."""
        upto, position = frame.upto or (), self.position
        if len(upto) > len(position):
            position.extend([0] * (len(upto) - len(position)))
        ahead = False
        for partition, offset in enumerate(upto):
            if offset > position[partition]:
                position[partition] = offset
                ahead = True
        return _as_seen_from(frame, position) if ahead else None

    def stop(self) -> None:
        self.model.hub.unsubscribe(self.client)


def _as_seen_from(message: LiveMessage, position: list[int]) -> LiveMessage:
    """``message`` with the id that is *this client's* position after it.

    A ring message's id is the read model's position, which is the client's too when the
    client has followed this server. A client that followed another server (before a
    restart) or a Kafka replay may have interleaved the partitions differently; giving it
    the read model's id would make its next resume skip or repeat records.
    """
    id = format_position(position)
    return message if id == message.id else with_id(message, id)


def _resume_point(last_event_id: str | None, partitions: int) -> Position | None:
    """The position ``last_event_id`` names, one entry per partition; None if it is not one
    of ours."""
    if last_event_id is None:
        return None
    since = Position.parse_id(last_event_id)
    if since is None:
        return None
    return since.pad(partitions)


async def _catch_up(model: ReadModel, since: Position) -> Position | None:
    """``since`` once the read model has reached it; None if it lies beyond the log's end
    (not a position of this log: a reset is right)."""
    ends = await model.end_offsets()
    if ends is not None and any(s > e for s, e in zip(since, ends, strict=False)):
        return None
    wait = model.settings.api_resume_wait_s
    if not await model.reach(since, wait):
        raise PositionNotReached(
            f"the read model has not reached {format_position(since)} within {wait:g}s "
            f"(it is at {model.position_id}); reconnect with the same id"
        )
    return since


async def replay_from_kafka(
    model: ReadModel, since: Position, until: Position
) -> AsyncGenerator[LiveMessage, None]:
    """The messages for the records in ``[since, until)`` of every partition, by offset.

    Raises ``PositionGone`` if the log no longer starts at or before ``since``.
    """
    topic = model.settings.events_topic
    wanted = [TopicPartition(topic, p) for p in range(len(until)) if since[p] < until[p]]
    if not wanted:
        return
    consumer = events_consumer(model.settings, "dispatchwire-api-resume")
    try:
        await consumer.start()
        begins = await consumer.beginning_offsets(wanted)
        if any(since[tp.partition] < begins[tp] for tp in wanted):
            raise PositionGone
        consumer.assign(wanted)
        for tp in wanted:
            consumer.seek(tp, since[tp.partition])
        position = list(since)
        remaining = set(wanted)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KAFKA_REPLAY_TIMEOUT_S
        while remaining:
            if loop.time() > deadline:
                raise PositionGone  # cannot catch up in time: a snapshot is the honest answer
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=1_000)
            for tp, records in sorted(batches.items(), key=lambda kv: kv[0].partition):
                for record in records:
                    if record.offset >= until[tp.partition]:
                        break
                    position[tp.partition] = record.offset + 1
                    try:
                        event = decode_event(record.value or b"")
                    except SchemaError:
                        continue
                    if not event.live:
                        continue
                    yield event_message(event, position, tp.partition, record.offset)
            for tp in list(remaining):
                if await consumer.position(tp) >= until[tp.partition]:
                    remaining.discard(tp)
                    consumer.pause(tp)
    except AioKafkaError as exc:
        log.warning("resume from Kafka failed (%s); sending a reset snapshot", exc)
        raise PositionGone from exc
    finally:
        await consumer.stop()
