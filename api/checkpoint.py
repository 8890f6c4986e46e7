"""Read model checkpoints (issue 16): the fold's state at a log position, so a starting
API folds only the events after it instead of the whole ``dispatch.events`` log.

A checkpoint is everything ``schemas.projection.Projection`` holds (emergencies, units,
the archived emergencies' events in archive order) plus the events-topic position it
reflects (the next offset per partition) and, per partition, a fingerprint of the last
record folded (CRC-32 of its value and its timestamp). The fold is deterministic and only
moves forward, so fold(checkpoint at P) + the events after P equals the fold of the whole
log (``tests/api/test_readmodel_checkpoint.py`` checks exactly that on a real broker).

Where: a compacted topic, ``dispatch.readmodel`` (one partition, one key), not a local
file: every replica and a fresh machine or container reads the same checkpoints, and the
log cleaner keeps the latest. Replicas that all write it are harmless: a loader reads the
last ``TAIL`` records (the newest of every writer) and takes the usable one with the
greatest position.

A record is the checkpoint's JSON, gzipped by the writer in a thread (``pack``) and sent
without Kafka compression: the producer would compress it on the event loop, a stall of
~15 ms per minute for a city's fleet and ~65 ms for a year's state, in the middle of the
live feed. A record of plain JSON (as written before) is read as well.

A checkpoint that cannot be used is ignored with a log line, and the full fold runs:
another schema version, another events topic, more partitions than the topic has, a
position beyond the log's end (the topic was recreated), a position below the log's start
(retention or deleteRecords removed events it did not hold), or a last record that is not
the one it fingerprinted (the topic was recreated and refilled past it).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError as AioKafkaError
from pydantic import ValidationError

from dispatchwire.errors import DispatchwireError
from dispatchwire.settings import Settings
from infra.clients import aio_consumer, aio_producer, partitions_of
from infra.topics import CHECKPOINT_MAX_BYTES, ensure_readmodel_topic
from schemas.entities import Emergency, Unit
from schemas.events import EmergencyArchived
from schemas.position import Position, format_position
from schemas.projection import Projection

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # bump when the checkpoint's shape or the fold's meaning changes
KEY = b"readmodel"
TAIL = 16  # records at the end of the checkpoint topic a loader considers
LOAD_TIMEOUT_S = 15.0  # reading them; a loader that cannot gives up and folds the log

# The last record folded on a partition: (CRC-32 of its value, its timestamp in ms).
Fingerprint = tuple[int, int]


def fingerprint(value: bytes | None, timestamp: int) -> Fingerprint:
    return zlib.crc32(value or b""), timestamp


class Unusable(Exception):
    """This checkpoint cannot start the read model; the message says why."""


@dataclass(frozen=True)
class Checkpoint:
    events_topic: str
    position: Position
    last: tuple[Fingerprint | None, ...]  # per partition; None: nothing folded there
    emergencies: tuple[Emergency, ...]
    units: tuple[Unit, ...]
    archived: tuple[EmergencyArchived, ...]  # in archive order
    written_at: datetime
    writer: str

    @classmethod
    def capture(
        cls,
        projection: Projection,
        events_topic: str,
        offsets: Sequence[int],
        last: Sequence[Fingerprint | None],
    ) -> Checkpoint:
        """The state now. Cheap (references only; entities and events are immutable and
        the fold replaces them), so it is taken on the loop between two records and
        ``encode``d in a thread."""
        return cls(
            events_topic=events_topic,
            position=Position(offsets),
            last=tuple(last),
            emergencies=tuple(projection.emergencies.values()),
            units=tuple(projection.units.values()),
            archived=tuple(projection.archived.values()),
            written_at=datetime.now(UTC),
            writer=f"{socket.gethostname()}:{os.getpid()}",
        )

    def encode(self) -> bytes:
        head = json.dumps(
            {
                "schema": SCHEMA_VERSION,
                "events_topic": self.events_topic,
                "position": list(self.position),
                "last": [list(f) if f is not None else None for f in self.last],
                "written_at": self.written_at.isoformat(),
                "writer": self.writer,
            }
        )
        # entities as pydantic writes them (as the events carry them), joined, not re-parsed
        parts = [head[:-1]]
        for name, items in (
            ("emergencies", self.emergencies),
            ("units", self.units),
            ("archived", self.archived),
        ):
            parts.append(f', "{name}": [' + ",".join(i.model_dump_json() for i in items) + "]")
        parts.append("}")
        return "".join(parts).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Checkpoint:
        try:
            data = json.loads(unpack(raw or b""))
        except ValueError as exc:
            raise Unusable(f"not JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            found = data.get("schema") if isinstance(data, dict) else None
            raise Unusable(f"schema version {found!r}, this API reads {SCHEMA_VERSION}")
        try:
            return cls(
                events_topic=str(data["events_topic"]),
                position=Position(int(o) for o in data["position"]),
                last=tuple((int(f[0]), int(f[1])) if f is not None else None for f in data["last"]),
                emergencies=tuple(Emergency.model_validate(e) for e in data["emergencies"]),
                units=tuple(Unit.model_validate(u) for u in data["units"]),
                archived=tuple(EmergencyArchived.model_validate(a) for a in data["archived"]),
                written_at=datetime.fromisoformat(data["written_at"]),
                writer=str(data["writer"]),
            )
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise Unusable(f"malformed ({type(exc).__name__}: {str(exc)[:200]})") from exc

    def restore(self, archive_memory: timedelta | None) -> Projection:
        """The projection this checkpoint holds, as the fold left it."""
        projection = Projection(
            emergencies={e.id: e for e in self.emergencies},
            units={u.id: u for u in self.units},
            archived={a.emergency_id: a for a in self.archived},
            archive_memory=archive_memory,
        )
        # the fold appends to both at once, so each region's order is the archived map's
        projection.remember_archived()
        return projection

    def check_offsets(self, events_topic: str, begins: Position, ends: Position) -> None:
        """Raise ``Unusable`` unless this position lies inside the log as it is now."""
        if self.events_topic != events_topic:
            raise Unusable(f"it is of topic {self.events_topic}, not {events_topic}")
        if len(self.position) > len(ends) or len(self.last) != len(self.position):
            raise Unusable(
                f"it has {len(self.position)} partitions, {events_topic} has {len(ends)}"
            )
        for p, offset in enumerate(self.position):
            if offset > ends[p]:
                raise Unusable(
                    f"partition {p} at {offset} is beyond the log's end {ends[p]} "
                    "(was the topic recreated?)"
                )
            if offset < begins[p]:
                raise Unusable(
                    f"partition {p} at {offset} is below the log's start {begins[p]} "
                    "(retention removed events it does not hold)"
                )

    def padded(self, begins: Position) -> Position:
        """The position to read on from; a partition added since starts at its log start."""
        return Position([*self.position, *begins[len(self.position) :]])


GZIP_MAGIC = b"\x1f\x8b"


class TooLarge(DispatchwireError):
    pass


def pack(checkpoint: Checkpoint) -> tuple[int, bytes]:
    """(bytes of JSON, the record's value): the checkpoint encoded and gzipped. CPU-bound:
    called in a thread. Over ``CHECKPOINT_MAX_BYTES`` of JSON is refused (``unpack`` would
    refuse to read it)."""
    raw = checkpoint.encode()
    if len(raw) > CHECKPOINT_MAX_BYTES:
        raise TooLarge(f"a checkpoint of {len(raw)} bytes is over {CHECKPOINT_MAX_BYTES}")
    return len(raw), gzip.compress(raw, compresslevel=6, mtime=0)


def unpack(value: bytes) -> bytes:
    """A record's JSON: ungzipped (at most ``CHECKPOINT_MAX_BYTES`` of it), or as it is."""
    if not value.startswith(GZIP_MAGIC):
        return value  # plain JSON, as checkpoints were written before
    inflate = zlib.decompressobj(wbits=31)  # the gzip container
    try:
        raw = inflate.decompress(value, CHECKPOINT_MAX_BYTES + 1)
    except zlib.error as exc:
        raise Unusable(f"not gzip ({exc})") from exc
    if len(raw) > CHECKPOINT_MAX_BYTES or inflate.unconsumed_tail:
        raise Unusable(f"over {CHECKPOINT_MAX_BYTES} bytes of JSON")
    return raw


def checkpoint_consumer(settings: Settings) -> AIOKafkaConsumer:
    return aio_consumer(
        settings,
        client_id="dispatchwire-api-checkpoint",
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=15_000,
        max_partition_fetch_bytes=CHECKPOINT_MAX_BYTES,
        fetch_max_bytes=CHECKPOINT_MAX_BYTES,
        isolation_level="read_committed",
    )


async def load(settings: Settings, begins: Position, ends: Position) -> Checkpoint | None:
    """The usable checkpoint with the greatest position for the events log as it is now
    (``begins``/``ends``), or None (no topic, none written, none usable: each one logged)."""
    consumer = checkpoint_consumer(settings)
    try:
        await consumer.start()
        return await asyncio.wait_for(_load(consumer, settings, begins, ends), LOAD_TIMEOUT_S)
    except (TimeoutError, AioKafkaError, OSError) as exc:
        log.warning(
            "could not read read-model checkpoints from %s (%s: %s); folding the whole log",
            settings.readmodel_topic,
            type(exc).__name__,
            exc,
        )
        return None
    finally:
        await consumer.stop()


async def _load(
    consumer: AIOKafkaConsumer, settings: Settings, begins: Position, ends: Position
) -> Checkpoint | None:
    topic = settings.readmodel_topic
    if not await partitions_of(consumer, topic):  # asked first: assigning would create it
        log.info("no read-model checkpoint topic %s; folding the whole log", topic)
        return None
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    first = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    consumer.seek(tp, max(first, end - TAIL))
    candidates: list[Checkpoint] = []
    while await consumer.position(tp) < end:
        for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
            try:
                checkpoint = Checkpoint.decode(record.value)
                checkpoint.check_offsets(settings.events_topic, begins, ends)
            except Unusable as exc:
                log.warning("ignoring read-model checkpoint %s@%d: %s", topic, record.offset, exc)
                continue
            candidates.append(checkpoint)
    candidates.sort(key=lambda c: sum(c.position), reverse=True)
    for checkpoint in candidates:
        try:
            await _check_last_records(consumer, settings.events_topic, checkpoint)
        except Unusable as exc:
            log.warning(
                "ignoring read-model checkpoint at %s: %s",
                format_position(checkpoint.position),
                exc,
            )
            continue
        return checkpoint
    if end > first:
        log.info("no usable read-model checkpoint in %s; folding the whole log", topic)
    return None


async def _check_last_records(
    consumer: AIOKafkaConsumer, events_topic: str, checkpoint: Checkpoint
) -> None:
    """Raise ``Unusable`` unless each partition's record before the position is the one the
    checkpoint folded last (a recreated topic refilled past the position fails here)."""
    wanted = {
        TopicPartition(events_topic, p): (offset - 1, checkpoint.last[p])
        for p, offset in enumerate(checkpoint.position)
        if checkpoint.last[p] is not None
    }
    if not wanted:
        return
    consumer.assign(list(wanted))
    begins = await consumer.beginning_offsets(list(wanted))
    for tp, (offset, _) in list(wanted.items()):
        if offset < begins[tp]:
            del wanted[tp]  # the position is the log's start: nothing before it to compare
        else:
            consumer.seek(tp, offset)
    while wanted:
        batches = await consumer.getmany(*wanted, timeout_ms=500, max_records=1)
        for tp, records in batches.items():
            if tp not in wanted or not records:
                continue
            offset, expected = wanted.pop(tp)
            record = records[0]
            found = fingerprint(record.value, record.timestamp)
            if record.offset != offset or found != expected:
                raise Unusable(
                    f"partition {tp.partition}'s record at {offset} is not the one it folded "
                    "(was the topic recreated?)"
                )
            consumer.pause(tp)


class CheckpointWriter:
    """Writes checkpoints to ``settings.readmodel_topic`` (created compacted on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def write(self, checkpoint: Checkpoint) -> int:
        """Write ``checkpoint``; its bytes of JSON (before gzip)."""
        size, value = await asyncio.to_thread(pack, checkpoint)
        if self._producer is None:
            await asyncio.to_thread(ensure_readmodel_topic, self.settings)
            producer = aio_producer(
                self.settings,
                client_id="dispatchwire-api-checkpoint",
                acks="all",
                compression_type=None,  # gzipped in ``pack``, off the event loop
                max_request_size=CHECKPOINT_MAX_BYTES,
                request_timeout_ms=30_000,
            )
            await producer.start()
            self._producer = producer
        await self._producer.send_and_wait(self.settings.readmodel_topic, value, key=KEY)
        return size

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
