"""Log I/O: read a window of a topic, write records to a topic, as bytes and fast.

A window is a range of offsets per partition: ``[start, stop)``. It can be given as log
positions (``schemas.position``, ``"10.4"``) or as times; a time maps, per partition, to the
first record whose Kafka timestamp is at or after it (``offsets_for_times``), so a time
window means "what was appended between these two instants". The window's end is fixed
when reading starts: a replay never follows the live log.

Speed. Records are moved as bytes: value, key and partition, never decoded, except where
the content is needed (the SSE stream, the fold, a file being imported, which is checked
against the schema). They are fetched with aiokafka ``getmany`` in large batches (its record
parser is C) and written into one open batch per target partition (``create_batch`` /
``send_batch``: no per-record future or await). The producer is idempotent with acks=all,
and aiokafka keeps one batch per partition queued behind the one in flight, so each
partition's order is kept and memory stays bounded.

Order. A region lives on one partition, so keeping each partition's order keeps each
region's order; this is all a replay as fast as possible into a topic needs, so there the
partitions are interleaved chunk by chunk (``WindowReader.next_chunk``). Where the order
across partitions matters too (pacing at speed xN, the SSE stream, a JSON Lines file that
may later be imported at speed xN) the partitions are merged in timestamp order (ties:
partition), one chunk at a time (``next_merged``): the records at or before the earliest
last-buffered timestamp of the partitions still fetching are safe to merge. A partition's
own order is never changed, even if its timestamps go back.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import heapq
import threading
import time
from collections.abc import Coroutine, Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from operator import attrgetter
from typing import Any, NamedTuple, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from dispatchwire.errors import KafkaError
from dispatchwire.settings import Settings
from infra.clients import aio_consumer, aio_producer, kafka_errors, partitions_of
from infra.topics import ensure_topic_like, region_partitioner
from schemas.position import Position

FETCH_RECORDS = 50_000  # records per getmany
FETCH_MAX_BYTES = 32 << 20
PARTITION_FETCH_BYTES = 8 << 20
BATCH_BYTES = 512 << 10  # one produce batch; below the broker's default message.max.bytes
STALL_TIMEOUT_S = 30.0

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code.

    ``asyncio.run`` refuses to start inside a running event loop (a Jupyter kernel, or a
    test session whose browser driver keeps one running), so there it runs on a thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="replay") as pool:
        return pool.submit(asyncio.run, coro).result()


class LogRecord(Protocol):
    """What a replay needs of a record: aiokafka's ``ConsumerRecord`` and ``Record`` fit."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # ms
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...


class Progress(Protocol):
    """Told the total (``None``: unknown) once, then how many records each step moved."""

    def start(self, total: int | None) -> None: ...
    def advance(self, n: int) -> None: ...


class NoProgress:
    def start(self, total: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass(frozen=True)
class Window:
    """Offsets ``[start, stop)`` per partition; ``None`` means the log's beginning / end,
    as does a partition past a position's entries."""

    start: Position | None = None
    stop: Position | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None


class Record(NamedTuple):  # a tuple: a million of them are built fast
    partition: int
    offset: int
    timestamp: int  # Kafka record time or, read from a file, the event's time; ms
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class ReplayStats:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / max(self.seconds, 1e-9)


_offset = attrgetter("offset")


_offset = attrgetter("offset")
_timestamp = attrgetter("timestamp")


def epoch_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


class WindowReader:
    """An aiokafka consumer assigned to one window of a topic (``async with``)."""

    def __init__(self, settings: Settings, window: Window, topic: str | None = None) -> None:
        self.settings = settings
        self.window = window
        self.topic = topic or settings.events_topic
        self.partitions = 0  # of the topic
        self.start: dict[int, int] = {}
        self.stop: dict[int, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: dict[int, TopicPartition] = {}  # partitions with records in the window
        self._fetched: set[int] = set()  # partitions read up to their stop
        self._buffers: dict[int, list[Any]] = {}  # for the merge

    @property
    def size(self) -> int:
        """How many records the window holds (exact for offsets; compaction aside)."""
        return sum(max(self.stop[p] - self.start[p], 0) for p in self.stop)

    async def __aenter__(self) -> WindowReader:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        self._consumer = aio_consumer(
            self.settings,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        )
        try:
            with kafka_errors(self.settings, f"reading {self.topic}"):
                await self._consumer.start()
                self.start, self.stop = await self._resolve()
        except BaseException:
            await self.close()
            raise
        self._tps = {
            p: TopicPartition(self.topic, p)
            for p in sorted(self.stop)
            if self.stop[p] > self.start[p]
        }
        self._buffers = {p: [] for p in self._tps}
        if self._tps:
            self._consumer.assign(list(self._tps.values()))
            for p, tp in self._tps.items():
                self._consumer.seek(tp, self.start[p])

    async def _resolve(self) -> tuple[dict[int, int], dict[int, int]]:
        assert self._consumer is not None
        ids = await partitions_of(self._consumer, self.topic)
        if not ids:
            raise KafkaError(f"topic {self.topic} does not exist or has no partitions")
        self.partitions = len(ids)
        tps = [TopicPartition(self.topic, p) for p in sorted(ids)]
        first = {tp.partition: o for tp, o in (await self._consumer.beginning_offsets(tps)).items()}
        end = {tp.partition: o for tp, o in (await self._consumer.end_offsets(tps)).items()}
        start, stop = dict(first), dict(end)
        window = self.window
        if window.start_time is not None:
            start = await self._offsets_at(tps, window.start_time, end)
        if window.stop_time is not None:
            stop = await self._offsets_at(tps, window.stop_time, end)
        if window.start is not None:
            start = {p: max(first[p], min(window.start.get(p, first[p]), end[p])) for p in end}
        if window.stop is not None:
            stop = {p: min(window.stop.get(p, end[p]), end[p]) for p in end}
        return start, stop

    async def _offsets_at(
        self, tps: list[TopicPartition], t: datetime, end: dict[int, int]
    ) -> dict[int, int]:
        assert self._consumer is not None
        found = await self._consumer.offsets_for_times({tp: epoch_ms(t) for tp in tps})
        return {
            tp.partition: (found[tp].offset if found.get(tp) else end[tp.partition]) for tp in tps
        }

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _fetch(self, partitions: Sequence[int]) -> dict[int, list[Any]]:
        """Records of ``partitions`` inside the window, each in log order; waits (up to
        ``STALL_TIMEOUT_S``) until at least one of them has some or all are read out."""
        assert self._consumer is not None
        deadline = time.monotonic() + STALL_TIMEOUT_S
        while True:
            wanted = [self._tps[p] for p in partitions if p not in self._fetched]
            if not wanted:
                return {}
            with kafka_errors(self.settings, f"reading {self.topic}"):
                got = await self._consumer.getmany(
                    *wanted, timeout_ms=500, max_records=FETCH_RECORDS
                )
            out: dict[int, list[Any]] = {}
            for tp, records in got.items():
                p, stop = tp.partition, self.stop[tp.partition]
                if records[-1].offset + 1 >= stop:
                    if records[-1].offset >= stop:
                        records = records[: bisect.bisect_left(records, stop, key=_offset)]
                    self._finish(p)
                if records:
                    out[p] = records
            if out:
                return out
            # Offsets may end in records we never see (transaction markers): go by position.
            for tp in wanted:
                if await self._consumer.position(tp) >= self.stop[tp.partition]:
                    self._finish(tp.partition)
            if time.monotonic() > deadline:
                raise KafkaError(
                    f"no records from {self.topic} partitions "
                    f"{[tp.partition for tp in wanted]} in {STALL_TIMEOUT_S:.0f}s "
                    "although the window is not finished"
                )

    def _finish(self, partition: int) -> None:
        self._fetched.add(partition)
        assert self._consumer is not None
        self._consumer.pause(self._tps[partition])  # no prefetching past the window

    async def next_chunk(self) -> dict[int, list[Any]] | None:
        """The next records, per partition in log order, partitions interleaved chunk by
        chunk; ``None`` once the window is read."""
        if self._buffers and any(self._buffers.values()):
            raise RuntimeError("next_chunk and next_merged cannot be mixed on one reader")
        while len(self._fetched) < len(self._tps):
            got = await self._fetch(list(self._tps))
            if got:
                return got
        return None

    async def next_merged(self) -> list[Any] | None:
        """The next records merged across partitions in timestamp order; ``None`` once the
        window is read."""
        buffers = self._buffers
        while empty := [p for p in self._tps if not buffers[p] and p not in self._fetched]:
            for p, records in (await self._fetch(empty)).items():
                buffers[p] = records
        live = [p for p in self._tps if buffers[p]]
        if not live:
            return None
        if len(live) == 1:
            chunk, buffers[live[0]] = buffers[live[0]], []
            return chunk
        # Every partition that may still deliver more has buffered up to at least here.
        open_ends = [buffers[p][-1].timestamp for p in live if p not in self._fetched]
        horizon = min(open_ends) if open_ends else None
        parts = []
        for p in live:
            records = buffers[p]
            cut = (
                len(records)
                if horizon is None
                else bisect.bisect_right(records, horizon, key=_timestamp)
            )
            if cut:
                parts.append(records[:cut])
                buffers[p] = records[cut:]
        return list(heapq.merge(*parts, key=_timestamp))  # stable: ties by partition


class TopicWriter:
    """One open batch per target partition, sent when full (``async with``).

    ``write`` takes the partition; ``partition_for`` picks it by key, with the default
    partitioner (murmur2, as the Java client, kafka-python and aiokafka use), so a key
    lands on the partition any of our producers would have chosen.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.partitions = 0
        self.sent = 0
        self._producer: AIOKafkaProducer | None = None
        self._open: dict[int, Any] = {}
        self._pending: list[asyncio.Future[Any]] = []
        # a region to its own partition, as every producer (schemas.placement)
        self._partitioner = region_partitioner(settings)
        self._by_key: dict[bytes, int] = {}
        self._all: list[int] = []

    async def __aenter__(self) -> TopicWriter:
        self._producer = aio_producer(
            self.settings,
            acks="all",
            enable_idempotence=True,
            max_batch_size=BATCH_BYTES,
            max_request_size=4 * BATCH_BYTES,
        )
        try:
            with kafka_errors(self.settings, f"producing to {self.topic}"):
                await self._producer.start()
                self._all = sorted(await self._producer.partitions_for(self.topic))
        except BaseException:
            await self._producer.stop()
            raise
        self.partitions = len(self._all)
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        assert self._producer is not None
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self._producer.stop()

    def partition_for(self, key: bytes | None, fallback: int = 0) -> int:
        """The key's partition; a record without key keeps to ``fallback`` (its source
        partition), so records that were in order stay in order."""
        if key is None:
            return fallback % self.partitions
        p = self._by_key.get(key)
        if p is None:
            p = self._by_key[key] = self._partitioner(key, self._all, self._all)
        return p

    async def write(self, partition: int, records: Iterable[LogRecord]) -> None:
        """Append the records' keys and values, in order, to ``partition``'s open batch."""
        assert self._producer is not None
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._producer.create_batch()
        n = 0
        for rec in records:
            key, value = rec.key, rec.value
            if batch.append(timestamp=None, key=key, value=value) is None:
                await self._send(partition)
                batch = self._open[partition] = self._producer.create_batch()
                if batch.append(timestamp=None, key=key, value=value) is None:
                    raise KafkaError(
                        f"a record of {len(value)} bytes does not fit in a "
                        f"batch of {BATCH_BYTES} bytes for {self.topic}"
                    )
            n += 1
        self.sent += n

    async def send_open(self) -> None:
        """Send the open batches now (before a pause), without waiting for the broker."""
        for p in list(self._open):
            await self._send(p)

    async def flush(self) -> None:
        """Send the open batches and wait until the broker has every record."""
        await self.send_open()
        with kafka_errors(self.settings, f"producing to {self.topic}"):
            await asyncio.gather(*self._pending)
        self._pending = []

    async def _send(self, partition: int) -> None:
        assert self._producer is not None
        batch = self._open.pop(partition, None)
        if batch is None or batch.record_count() == 0:
            return
        with kafka_errors(self.settings, f"producing to {self.topic}"):
            # Waits while the partition's previous batch is still queued: the backpressure.
            self._pending.append(
                await self._producer.send_batch(batch, self.topic, partition=partition)
            )
        if len(self._pending) >= 256:
            done = [f for f in self._pending if f.done()]
            with kafka_errors(self.settings, f"producing to {self.topic}"):
                for f in done:
                    f.result()  # raises what the broker answered
            self._pending = [f for f in self._pending if not f.done()]


async def write_grouped(writer: TopicWriter, records: Iterable[LogRecord]) -> None:
    """Records to the partitions of their keys, each partition's share in order."""
    groups: dict[int, list[LogRecord]] = {}
    for rec in records:
        p = writer.partition_for(rec.key, rec.partition)
        groups.setdefault(p, []).append(rec)
    for p, group in groups.items():
        await writer.write(p, group)


class LogWindow:
    """A resolved window, read from synchronous code (the SSE stream's thread pool, the
    fold, tests): its reader runs on an event loop of its own in a background thread, which
    keeps fetching while the caller works on the previous chunk."""

    def __init__(self, settings: Settings, window: Window, topic: str | None = None) -> None:
        self.settings = settings
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="replay-reader", daemon=True
        )
        self._thread.start()
        self._reader = WindowReader(settings, window, topic)
        try:
            self._call(self._reader.open())
        except BaseException:
            self._stop_loop()
            raise
        self.topic = self._reader.topic
        # every partition of the topic: the window's ends as written positions
        self.start, self.stop = Position.of(self._reader.start), Position.of(self._reader.stop)

    @property
    def size(self) -> int:
        return self._reader.size

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def records(self) -> Generator[LogRecord, None, None]:
        """The window's records, merged across partitions in timestamp order."""
        try:
            while (chunk := self._call(self._reader.next_merged())) is not None:
                yield from chunk
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._call(self._reader.close())
            finally:
                self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def produce(settings: Settings, topic: str, records: Iterable[LogRecord]) -> int:
    """Send records to ``topic`` keyed as they are (partition by key); returns how many.

    For a window of a topic, ``replay_to_topic`` is faster: it skips this iterator."""
    ensure_topic_like(settings, topic)

    async def send_all() -> int:
        it = iter(records)
        async with TopicWriter(settings, topic) as writer:
            while chunk := list(islice(it, 20_000)):
                await write_grouped(writer, chunk)
        return writer.sent

    return run_sync(send_all())
