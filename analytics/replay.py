"""Read a window of the event log and re-emit it, as fast as possible or at speed xN.

A window is a range of offsets per partition: ``[start, stop)``. It can be given as log
positions (``"0:10,1:4"``) or as times; a time maps, per partition, to the first record
whose Kafka timestamp is at or after it (``offsets_for_times``), so a time window means
"what was appended between these two instants". The window's end is fixed when reading
starts: a replay never follows the live log.

Records of all partitions are merged in timestamp order (ties: partition, offset), which
keeps each region's order, because a region lives on one partition. Memory stays bounded:
a partition whose buffer is full is paused until the merge has drained it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError as _KafkaError
from kafka.errors import TopicAlreadyExistsError

from dispatchwire.errors import KafkaError, KafkaUnavailable, ValidationFailed
from dispatchwire.settings import Settings
from infra.topics import admin_client
from schemas import SchemaError, decode_event
from schemas.projection import Projection

log = logging.getLogger(__name__)

BUFFER_PER_PARTITION = 5_000
STALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Window:
    """Offsets ``[start, stop)`` per partition; ``None`` means the log's beginning / end."""

    start: dict[int, int] | None = None
    stop: dict[int, int] | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    timestamp: int  # Kafka record timestamp, ms
    key: bytes | None
    value: bytes


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


class LogWindow:
    """The resolved window of one topic: where each partition starts and stops."""

    def __init__(self, settings: Settings, window: Window, topic: str | None = None) -> None:
        self.settings = settings
        self.topic = topic or settings.events_topic
        self._closed = False
        try:
            self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                          enable_auto_commit=False, group_id=None,
                                          max_poll_records=2_000)
            self.start, self.stop = self._resolve(window)
        except _KafkaError as exc:
            raise KafkaUnavailable(settings.kafka_bootstrap, str(exc)) from exc

    def _resolve(self, window: Window) -> tuple[dict[int, int], dict[int, int]]:
        ids = self.consumer.partitions_for_topic(self.topic)
        if not ids:
            raise KafkaError(f"topic {self.topic} does not exist or has no partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(ids)]
        first = {tp.partition: o for tp, o in self.consumer.beginning_offsets(tps).items()}
        end = {tp.partition: o for tp, o in self.consumer.end_offsets(tps).items()}
        start = dict(first)
        stop = dict(end)
        if window.start_time is not None:
            start = self._offsets_at(tps, window.start_time, end)
        if window.stop_time is not None:
            stop = self._offsets_at(tps, window.stop_time, end)
        if window.start is not None:
            start = {p: max(first[p], min(window.start.get(p, first[p]), end[p])) for p in end}
        if window.stop is not None:
            stop = {p: min(window.stop.get(p, end[p]), end[p]) for p in end}
        return start, stop

    def _offsets_at(self, tps: list[TopicPartition], t: datetime,
                    end: dict[int, int]) -> dict[int, int]:
        found = self.consumer.offsets_for_times({tp: _ms(t) for tp in tps})
        return {tp.partition: (found[tp].offset if found.get(tp) else end[tp.partition])
                for tp in tps}

    @property
    def size(self) -> int:
        """How many records the window holds (exact for offsets; compaction aside)."""
        return sum(max(self.stop[p] - self.start[p], 0) for p in self.stop)

    def records(self) -> Iterator[Record]:
        """The window's records, merged across partitions in timestamp order."""
        active = {p for p in self.stop if self.stop[p] > self.start[p]}
        if not active:
            self.close()
            return
        tps = {p: TopicPartition(self.topic, p) for p in active}
        self.consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            self.consumer.seek(tp, self.start[p])
        buffers: dict[int, deque[Record]] = {p: deque() for p in active}
        done: set[int] = set()
        try:
            while len(done) < len(active):
                waiting = [p for p in active if p not in done and not buffers[p]]
                if waiting:
                    self._fill(tps, buffers, done, waiting)
                    continue
                heads = [p for p in active if buffers[p]]
                p = min(heads, key=lambda q: (buffers[q][0].timestamp, q))
                rec = buffers[p].popleft()
                if not buffers[p] and rec.offset + 1 >= self.stop[p]:
                    done.add(p)
                if len(buffers[p]) < BUFFER_PER_PARTITION // 2:
                    self.consumer.resume(tps[p])
                yield rec
        finally:
            self.close()

    def _fill(self, tps: dict[int, TopicPartition], buffers: dict[int, deque[Record]],
              done: set[int], waiting: list[int]) -> None:
        deadline = time.monotonic() + STALL_TIMEOUT_S
        while any(not buffers[p] and p not in done for p in waiting):
            if time.monotonic() > deadline:
                raise KafkaError(f"no records from {self.topic} partitions {waiting} in "
                                 f"{STALL_TIMEOUT_S:.0f}s although the window is not finished")
            polled = self.consumer.poll(timeout_ms=500)
            for tp, batch in polled.items():
                p = tp.partition
                for r in batch:
                    if r.offset < self.stop[p]:
                        buffers[p].append(Record(p, r.offset, r.timestamp, r.key, r.value))
                if self.consumer.position(tp) >= self.stop[p]:
                    self.consumer.pause(tp)
                    if not buffers[p]:
                        done.add(p)
                elif len(buffers[p]) >= BUFFER_PER_PARTITION:
                    self.consumer.pause(tp)
            # Offsets may end in records we never see (transaction markers): go by position.
            for p in waiting:
                if not buffers[p] and self.consumer.position(tps[p]) >= self.stop[p]:
                    done.add(p)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.consumer.close(autocommit=False)


class Pacer:
    """Turns log timestamps into wall-clock delays for speed xN (``None``: no waiting)."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self._origin: tuple[int, float] | None = None

    def delay(self, timestamp_ms: int) -> float:
        if not self.speed:
            return 0.0
        now = time.monotonic()
        if self._origin is None:
            self._origin = (timestamp_ms, now)
            return 0.0
        log_ms, wall = self._origin
        return max(0.0, wall + (timestamp_ms - log_ms) / 1000 / self.speed - now)


def paced(records: Iterable[Record], speed: float | None) -> Iterator[Record]:
    pacer = Pacer(speed)
    for rec in records:
        wait = pacer.delay(rec.timestamp)
        if wait:
            time.sleep(wait)
        yield rec


def export_jsonl(records: Iterable[Record], out: BinaryIO) -> int:
    """One event per line, the record value byte for byte (compact JSON has no newline)."""
    n = 0
    for rec in records:
        out.write(rec.value)
        out.write(b"\n")
        n += 1
    return n


def read_jsonl(path: Path) -> Iterator[Record]:
    """Events of a JSON Lines file as records (key = region), checked against the schema."""
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            value = line.rstrip(b"\n")
            if not value.strip():
                continue
            try:
                event = decode_event(value)
            except SchemaError as exc:
                raise ValidationFailed(
                    [{"field": f"{path.name}:{lineno}.{e['field']}", "reason": e["reason"]}
                     for e in exc.errors]
                ) from exc
            yield Record(-1, lineno, _ms(event.occurred_at), event.region.encode(), value)


def ensure_topic_like(settings: Settings, topic: str) -> None:
    """Create ``topic`` with the events topic's partition count, so keys land alike."""
    admin = admin_client(settings)
    try:
        if topic not in set(admin.list_topics()):
            admin.create_topics([NewTopic(topic, num_partitions=settings.partitions,
                                          replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    except _KafkaError as exc:
        raise KafkaUnavailable(settings.kafka_bootstrap, str(exc)) from exc
    finally:
        admin.close()


def produce(settings: Settings, topic: str, records: Iterable[Record]) -> int:
    """Send records to ``topic`` keeping key and value; returns how many were sent."""
    ensure_topic_like(settings, topic)
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                 linger_ms=10, max_in_flight_requests_per_connection=1)
    except _KafkaError as exc:
        raise KafkaUnavailable(settings.kafka_bootstrap, str(exc)) from exc
    n = 0
    try:
        for rec in records:
            producer.send(topic, key=rec.key, value=rec.value)
            n += 1
        producer.flush()
    except _KafkaError as exc:
        raise KafkaError(f"producing to {topic} failed after {n} records: {exc}") from exc
    finally:
        producer.close()
    return n



def fold_until(settings: Settings, position: dict[int, int],
               topic: str | None = None) -> Projection:
    """Current state at ``position``: the fold of every event before it."""
    projection = Projection()
    for rec in LogWindow(settings, Window(stop=position), topic).records():
        try:
            projection.apply(decode_event(rec.value))
        except SchemaError:
            log.warning("skipping undecodable record %d:%d", rec.partition, rec.offset)
    return projection
