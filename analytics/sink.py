"""``dispatchwire sink``: every event of ``dispatch.events`` into DuckDB, exactly once.

The sink reads with its own consumer group (``<app_id>-sink``) but does not trust Kafka's
committed offsets: the position it resumes from is the ``sink_offsets`` table, written in
the same DuckDB transaction as the rows it describes (see ``tables.write_batch``). A sink
killed at any instant therefore restarts exactly after the last batch that reached the
file. It still commits to Kafka after each batch, only so that lag shows in the usual tools.

It reads with aiokafka (driven by a private event loop; the rest of the sink is plain
blocking code): its record parsing is C-accelerated and reaches some 250k records/s here,
where kafka-python's pure-Python fetcher managed about 11k/s and was the whole limit.
While DuckDB writes a batch (in a worker thread, with one core fewer than the machine has),
the loop already reads and decodes the next one and builds its Arrow table piece by piece;
the next write starts as soon as this one ends. ``sink_offsets`` and the Kafka commit only
ever name written records.

Between batches it answers snapshot requests (``snapshot.serve_requests``), because while
it runs no other process may open the database file.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError as _KafkaError

from analytics.snapshot import serve_requests
from analytics.tables import (
    BatchResult,
    batch_table,
    create_tables,
    load_offsets,
    write_batch,
)
from dispatchwire.errors import SinkError
from dispatchwire.settings import Settings
from infra import clients
from infra.topics import ensure_topics
from schemas.position import format_position

log = logging.getLogger(__name__)
T = TypeVar("T")

LINGER_S = 0.5  # how long a batch may wait to fill up before it is written anyway
# With no write running, a batch is written once it holds this share of the batch size
# (or LINGER_S passed): the writer does not idle while a full batch is fetched; the next
# batch then fills up to the batch size while this one is written.
START_SHARE = 5
# DuckDB threads of the sink: all cores but one, which fetches and decodes the next batch
# while DuckDB writes (on 2 cores, 1 thread measured ~25 % faster end to end than 2).
DUCKDB_THREADS = max(1, (os.cpu_count() or 2) - 1)
# Per fetch and per partition (some 16k events; a batch of 50k is ~25 MB): the first write
# starts after one fetch, and a small fetch does not hold up other requests on the broker
# connection (an end_offsets behind a 64 MB fetch took ~0.16 s). Reading runs beside the
# writes, so the extra round trips cost no time.
FETCH_BYTES = 8 * 1024 * 1024
# How often the consumer refreshes the topic's metadata, so how soon the sink reads a
# partition added while it runs (a new region's, README "Regions and partitions").
PARTITION_CHECK_S = 30.0


def connect(path: Path, timeout: float = 30.0) -> duckdb.DuckDBPyConnection:
    """Open the sink database for writing, waiting while a snapshot copy holds it briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise SinkError(
                    f"cannot open {path} for writing: {exc}. Is another `dispatchwire sink` "
                    "running on it? Set DISPATCHWIRE_SINK_DB to use another file."
                ) from exc
            time.sleep(0.2)


@dataclass
class _Pending:
    """Records read for the next write, and their Arrow table built in pieces as they
    arrive (on the fetch loop, while the last batch is written, not in the writer)."""

    started: float = field(default_factory=time.monotonic)
    records: list = field(default_factory=list)
    pieces: list[pa.Table] = field(default_factory=list)

    def add(self, records: list) -> None:
        self.pieces.append(batch_table(records, first_seq=len(self.records)))
        self.records.extend(records)

    def table(self) -> pa.Table:
        return pa.concat_tables(self.pieces)


@dataclass
class SinkStats:
    batches: int = 0
    records: int = 0
    events: int = 0
    started: float = field(default_factory=time.monotonic)
    write_s: float = 0.0  # wall time inside write_batch (the writer thread)
    write_cpu_s: float = 0.0  # CPU time of the writer thread in it: DuckDB's share

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.records += result.records
        self.events += result.events

    @property
    def rate(self) -> float:
        return self.records / max(time.monotonic() - self.started, 1e-9)


class Sink:
    """One sink over ``settings.events_topic`` writing to ``settings.sink_db``."""

    def __init__(self, settings: Settings, batch_size: int | None = None) -> None:
        self.settings = settings
        self.topic = settings.events_topic
        self.batch_size = batch_size or settings.sink_batch_size
        self.start_size = max(1, self.batch_size // START_SHARE)
        self.stats = SinkStats()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.partitions: list[TopicPartition] = []
        self.written: dict[int, int] = {}  # partition -> next offset of the stored rows
        self._ahead: _Pending | None = None  # read while the last batch was written

    def _await(self, awaitable: Awaitable[T]) -> T:
        assert self.loop is not None
        return self.loop.run_until_complete(awaitable)

    def open(self) -> None:
        self.con = connect(self.settings.sink_db)
        self.con.execute(f"SET threads = {DUCKDB_THREADS}")
        create_tables(self.con)
        stored = load_offsets(self.con, self.topic)
        self.written = dict(stored)
        ensure_topics(self.settings)
        self.loop = asyncio.new_event_loop()
        with clients.kafka_errors(self.settings, "starting the sink's consumer"):
            self._await(self._start_consumer())
        log.info(
            "sink on %s -> %s, resuming at %s",
            self.topic,
            self.settings.sink_db,
            format_position(stored) or "the beginning",
        )

    async def _start_consumer(self) -> None:
        self.consumer = clients.aio_consumer(
            self.settings,
            group_id=f"{self.settings.app_id}-sink",
            client_id=f"{self.settings.app_id}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=FETCH_BYTES,
            max_partition_fetch_bytes=FETCH_BYTES,
            metadata_max_age_ms=int(PARTITION_CHECK_S * 1000),
        )
        await self.consumer.start()
        self.partitions = [
            TopicPartition(self.topic, p) for p in sorted(await self._partition_ids())
        ]
        self.consumer.assign(self.partitions)
        for tp in self.partitions:
            await self._seek_start(tp)

    async def _seek_start(self, tp: TopicPartition) -> None:
        """Where a partition's reading starts: after its stored rows, else its log start."""
        assert self.consumer is not None
        if tp.partition in self.written:
            self.consumer.seek(tp, self.written[tp.partition])
        else:
            await self.consumer.seek_to_beginning(tp)
            self.written[tp.partition] = int(await self.consumer.position(tp))

    def _added_partitions(self) -> list[int]:
        """Partitions the topic has gained since the sink assigned its own, as the
        consumer's metadata (refreshed every ``PARTITION_CHECK_S``) lists them."""
        assert self.consumer is not None
        listed = self.consumer.partitions_for_topic(self.topic) or set()
        return sorted(set(listed) - {tp.partition for tp in self.partitions})

    async def _add_partitions(self, added: list[int]) -> None:
        """Read ``added`` partitions too, each from its log start (or its stored position).

        Assigning replaces the whole assignment and forgets the positions, so each partition
        read so far is sought back to its position: after the records already read (those
        read ahead are written with the next batch), so nothing is read twice or skipped."""
        assert self.consumer is not None
        positions = {tp: int(await self.consumer.position(tp)) for tp in self.partitions}
        new = [TopicPartition(self.topic, p) for p in added]
        self.partitions = sorted([*self.partitions, *new])
        self.consumer.assign(self.partitions)
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)
        for tp in new:
            await self._seek_start(tp)
        log.warning(
            "%s gained partitions; the sink reads them too: %s",
            self.topic,
            ", ".join(f"{tp.partition} from offset {self.written[tp.partition]}" for tp in new),
        )

    async def _partition_ids(self, timeout: float = 30.0) -> set[int]:
        """The topic's partitions (aiokafka's consumer only learns them by subscribing)."""
        deadline = time.monotonic() + timeout
        while True:
            ids = await asyncio.to_thread(self._fetch_partition_ids)
            if ids:
                return ids
            if time.monotonic() > deadline:
                raise SinkError(
                    f"topic {self.topic} has no partitions; run `dispatchwire run` "
                    "or check DISPATCHWIRE_TOPIC_PREFIX"
                )
            await asyncio.sleep(0.2)

    def _fetch_partition_ids(self) -> set[int]:
        with clients.kafka_errors(self.settings, "reading the events topic's partitions"):
            metadata = clients.consumer(
                self.settings,
                client_id=f"{self.settings.app_id}-sink-metadata",
                enable_auto_commit=False,
            )  # no group: nothing to commit
        try:
            return set(clients.partitions_of_sync(metadata, self.topic))
        finally:
            metadata.close()

    def end_position(self) -> dict[int, int]:
        assert self.consumer is not None
        ends = self._await(self.consumer.end_offsets(self.partitions))
        return {tp.partition: int(o) for tp, o in ends.items()}

    def position(self) -> dict[int, int]:
        assert self.consumer is not None
        return {
            tp.partition: int(self._await(self.consumer.position(tp))) for tp in self.partitions
        }

    async def _collect(
        self, pending: _Pending, until: asyncio.Future | None = None, enough: int | None = None
    ) -> None:
        """Read into ``pending`` until it holds ``enough`` records (default: the batch size),
        lingering up to ``LINGER_S`` from its start. With ``until``, stop early once it is
        done (a write finished)."""
        assert self.consumer is not None
        enough = self.batch_size if enough is None else min(enough, self.batch_size)
        while len(pending.records) < enough:
            if until is not None and until.done():
                break
            remaining = LINGER_S - (time.monotonic() - pending.started)
            if remaining <= 0:
                break
            # While a write runs, poll in short steps so the next write starts without delay.
            wait = min(remaining, 0.02) if until is not None else remaining
            polled = await self.consumer.getmany(
                timeout_ms=int(wait * 1000) + 1,
                max_records=self.batch_size - len(pending.records),
            )
            for batch in polled.values():
                pending.add(batch)

    async def _commit(self) -> None:
        assert self.consumer is not None
        offsets = {
            tp: self.written[tp.partition] for tp in self.partitions if tp.partition in self.written
        }
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)  # informational only; sink_offsets is the truth
        except _KafkaError as exc:
            log.debug("Kafka offset commit failed (harmless): %s", exc)

    async def _write_and_prefetch(self, pending: _Pending) -> BatchResult:
        """Write ``pending`` in a thread (DuckDB lets go of the GIL while it works) and,
        meanwhile, collect (decode) the records of the next batch on this loop."""
        assert self.con is not None and self.loop is not None
        # Handed to the thread now: a task (``asyncio.to_thread``) would only start once
        # this loop waits, and reading records already fetched does not wait, so the write
        # started only when the next batch was read in full.
        write = self.loop.run_in_executor(
            None, functools.partial(self._timed_write, pending.records, pending.table())
        )
        ahead = _Pending()
        try:
            await self._collect(ahead, until=write)
            self._ahead = ahead if ahead.records else None
        finally:
            result = await write
        return result

    def _timed_write(self, records: list, table: pa.Table) -> BatchResult:
        """``write_batch`` (in the writer thread), adding its time to the stats."""
        assert self.con is not None
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return write_batch(self.con, self.topic, records, table=table)
        finally:
            self.stats.write_s += time.perf_counter() - started
            self.stats.write_cpu_s += time.thread_time() - cpu

    def step(self) -> BatchResult | None:
        """Write one batch (if anything arrived) and answer snapshot requests.

        Records read ahead while the previous batch was written start the next batch;
        the stored position only ever moves with the rows of a committed write."""
        assert self.con is not None and self.consumer is not None
        added = self._added_partitions()
        if added:
            self._await(self._add_partitions(added))
        pending, self._ahead = self._ahead or _Pending(), None
        self._await(self._collect(pending, enough=self.start_size))
        result = None
        if pending.records:
            result = self._await(self._write_and_prefetch(pending))
            for r in pending.records:  # log order per partition: the last of each is highest
                self.written[r.partition] = r.offset + 1
            self.stats.add(result)
            log.debug("stored %d records (%d new events)", result.records, result.events)
            self._await(self._commit())
        serve_requests(self.con, self.settings)
        return result

    def run(
        self, should_stop: Callable[[], bool] = lambda: False, until_caught_up: bool = False
    ) -> SinkStats:
        """Consume until ``should_stop()`` (or, with ``until_caught_up``, the log end)."""
        target = self.end_position() if until_caught_up else None
        last_report = time.monotonic()
        while not should_stop():
            self.step()
            if (
                target is not None
                and self._ahead is None
                and all(self.position()[p] >= o for p, o in target.items())
            ):  # nothing read and not yet written, and read up to the end
                break
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                log.info(
                    "sink: %d records in %d batches (%.0f/s), at %s; writing %.0f %% of the "
                    "time, %.1f us of writer CPU per record",
                    self.stats.records,
                    self.stats.batches,
                    self.stats.rate,
                    format_position(self.written),
                    100 * self.stats.write_s / max(time.monotonic() - self.stats.started, 1e-9),
                    1e6 * self.stats.write_cpu_s / max(self.stats.records, 1),
                )
        return self.stats

    def close(self) -> None:
        if self.consumer is not None:
            self._await(self.consumer.stop())
            self.consumer = None
        if self.loop is not None:
            self.loop.close()
            self.loop = None
        if self.con is not None:
            self.con.close()
            self.con = None
