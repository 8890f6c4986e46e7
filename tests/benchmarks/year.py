"""A compressed year (issue 16): does hot state stay bounded as history grows?

A generator writes a city's traffic straight into ``dispatch.commands`` in the commands'
format, with record timestamps (CreateTime) spread over the simulated time, which ends now:
every emergency is reported, dispatched to a fitting unit of its region (by name, so the
generator knows which unit moves), gets two GPS fixes of that unit and is completed (or,
with no unit free, cancelled); every region gets an ``archive_closed`` sweep every 10
simulated minutes, as the worker's timer would send it. The worker decides each command
with its record time as "now", so the simulated hours pass for it as real ones would.

After one day of traffic and again after the whole year it measures, each from a cold start:
the worker's recovery (process start to ``/dispatch/ready/``) and its RSS, the API's read
model bootstrap (process start to ``/readyz``) and its RSS, and the bytes of the live
snapshot (``GET /api/state``). Target: each figure after a year within 2x of after a day.

``make bench`` (``run``) builds the log fast, on a broker of its own: each command is decided
in-process by the worker's code, and what the worker would have written (commands, its
table's changelog, events, units, the group's offsets) is written straight to the topics
(``WorkerLog``); then a real worker and real APIs cold-start on it. Through the real
pipeline (``--pipeline``, a real worker deciding every command) a year takes hours.

The bench's topics keep everything (``retention.ms`` -1): with year-old record timestamps
Kafka's default 7-day retention would delete the history under the readers' feet.

    python -m tests.benchmarks --only year [--quick]     # quick: 30 days, not 365
    python -m tests.benchmarks.year [--days N]               # the same, own broker
    python -m tests.benchmarks.year --worker [--days N]      # the worker alone, own broker
    python -m tests.benchmarks.year --readmodel [--days N]   # the read model alone, own broker
    python -m tests.benchmarks.year --pipeline [--days N]    # through a real worker (hours)
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from dispatchwire.settings import Settings
from schemas.codec import encode
from schemas.commands import (
    ArchiveClosed,
    CompleteEmergency,
    DispatchEmergency,
    ReportEmergency,
    SetUnitStatus,
    UnitPosition,
)
from schemas.commands import CancelEmergency as CancelCommand
from schemas.entities import FITTING_UNIT_TYPES, EmergencyType, UnitStatus
from schemas.geo import load_network
from streams.decisions import archive_command_id
from streams.seed import SeedUnit, fleet, register_commands
from tests.benchmarks import product
from tests.benchmarks.e2e import wait_worker_ready
from tests.benchmarks.procs import own_broker, settle_rss, stop, wait_http
from tests.benchmarks.report import Row

log = logging.getLogger(__name__)

DAY_S = 86_400.0
# the type mix of a city's calls (medical most, fire least)
TYPE_WEIGHTS = {
    EmergencyType.MEDICAL: 0.5,
    EmergencyType.TRAFFIC: 0.2,
    EmergencyType.POLICE: 0.2,
    EmergencyType.FIRE: 0.1,
}
# the figures whose growth from one day to the year the target bounds (2x)
BOUNDED = (
    "snapshot KiB",
    "worker recovery s",
    "worker RSS MiB",
    "read model bootstrap s",
    "API RSS MiB",
)


@dataclass
class CompressedTime:
    """The traffic of ``per_day`` emergencies a day from ``start``, in record-time order,
    produced a stretch at a time (``until``): the units' diaries and the commands already
    planned past the stretch carry over to the next one."""

    start: datetime
    per_day: int = 1_000
    sweep_every_s: float = 600.0
    archive_after_s: float = 3_600.0
    forget_after_s: float = 7 * DAY_S
    seed: int = 16
    units: list[SeedUnit] = field(default_factory=lambda: fleet(load_network()))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        network = load_network()
        self.regions = sorted({u.region for u in self.units})
        self.places: dict[str, list[tuple[float, float]]] = {r: [] for r in self.regions}
        for node in sorted(network.routable):  # a route leads to and from every one
            lat, lon = network.nodes[node]
            region = network.region_for(lat, lon)
            if region in self.places:
                self.places[region].append((lat, lon))
        self.free_at = {u.unit_id: self.start for u in self.units}
        self.planned: list[tuple[int, int, str, bytes]] = []  # (ms, seq, region, value)
        self.seq = itertools.count()
        self.next_emergency = 0
        self.next_sweep = self.start
        self.counts = {"emergencies": 0, "cancelled": 0, "commands": 0}

    @staticmethod
    def ms(at: datetime) -> int:
        return int(at.timestamp() * 1000)

    def _plan(self, at: datetime, command: Any) -> None:
        item = (self.ms(at), next(self.seq), command.region, encode(command))
        heapq.heappush(self.planned, item)

    def fleet(self) -> Iterator[tuple[int, str, bytes]]:
        at = self.ms(self.start)
        for cmd in register_commands(self.units):
            yield at, cmd.region, encode(cmd)

    def _emergency(self, n: int, at: datetime) -> None:
        rng = self.rng
        region = self.regions[n % len(self.regions)]
        kind = rng.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()))[0]
        lat, lon = rng.choice(self.places[region])
        report = ReportEmergency(
            command_id=f"y{n}-rep",
            region=region,
            type=kind,
            priority=rng.randint(1, 5),
            lat=lat,
            lon=lon,
            description="compressed year",
            issued_at=at,
        )
        self._plan(at, report)
        eid = report.emergency_id
        fitting = [
            u
            for u in self.units
            if u.region == region
            and u.type in FITTING_UNIT_TYPES[kind]
            and self.free_at[u.unit_id] <= at
        ]
        self.counts["emergencies"] += 1
        if not fitting:
            self.counts["cancelled"] += 1
            cancel = CancelCommand(command_id=f"y{n}-cnc", region=region, emergency_id=eid)
            self._plan(at + timedelta(seconds=300), cancel)
            return
        unit = rng.choice(fitting)
        dispatch = DispatchEmergency(
            command_id=f"y{n}-dsp", region=region, emergency_id=eid, unit_id=unit.unit_id
        )
        self._plan(at + timedelta(seconds=60), dispatch)
        for i, f in enumerate((0.5, 1.0)):
            fix = UnitPosition(
                command_id=f"y{n}-mv{i}",
                region=region,
                unit_id=unit.unit_id,
                lat=round(unit.lat + (lat - unit.lat) * f, 7),
                lon=round(unit.lon + (lon - unit.lon) * f, 7),
            )
            self._plan(at + timedelta(seconds=120 + 120 * i), fix)
        done = at + timedelta(seconds=900 + rng.uniform(0, 900))
        self._plan(done, CompleteEmergency(command_id=f"y{n}-cmp", region=region, emergency_id=eid))
        self.free_at[unit.unit_id] = done

    def until(self, end: datetime) -> Iterator[tuple[int, str, bytes]]:
        """The commands with record times before ``end``, in record-time order."""
        gap = DAY_S / self.per_day
        while True:
            n = self.next_emergency
            at = self.start + timedelta(seconds=(n + 0.5) * gap)
            if at >= end:
                break
            while self.next_sweep <= at:
                for region in self.regions:
                    sweep = ArchiveClosed(
                        command_id=archive_command_id(region, self.ms(self.next_sweep)),
                        region=region,
                        after_s=self.archive_after_s,
                        forget_after_s=self.forget_after_s,
                    )
                    self._plan(self.next_sweep, sweep)
                self.next_sweep += timedelta(seconds=self.sweep_every_s)
            self._emergency(n, at)
            self.next_emergency += 1
            yield from self._due(self.ms(at))
        yield from self._due(self.ms(end) - 1)

    def _due(self, until_ms: int) -> Iterator[tuple[int, str, bytes]]:
        while self.planned and self.planned[0][0] <= until_ms:
            at, _, region, value = heapq.heappop(self.planned)
            self.counts["commands"] += 1
            yield at, region, value

    def sentinels(self, at: datetime) -> list[tuple[int, str, bytes, str]]:
        """One command per region after everything else: its rejection proves the worker
        has done every earlier command of the region."""
        out = []
        for region in self.regions:
            cmd = SetUnitStatus(
                command_id=f"sentinel-{uuid.uuid4().hex[:12]}",
                region=region,
                unit_id="no-such-unit",
                status=UnitStatus.AVAILABLE,
            )
            out.append((self.ms(at), region, encode(cmd), cmd.command_id))
        return out


def produce(settings: Settings, records: Iterator[tuple[int, str, bytes]]) -> int:
    """Write ``records`` (ms, region, value) to the commands topic with those timestamps."""
    from infra.clients import producer as kafka_producer
    from infra.topics import kafka_python_partitioner

    producer = kafka_producer(
        settings,
        acks=1,
        linger_ms=20,
        batch_size=512 * 1024,
        compression_type=None,
        partitioner=kafka_python_partitioner(settings),
    )
    sent = 0
    try:
        for at, region, value in records:
            producer.send(
                settings.commands_topic, key=region.encode(), value=value, timestamp_ms=at
            )
            sent += 1
        producer.flush(300)
    finally:
        producer.close(10)
    return sent


def create_topics(settings: Settings) -> None:
    """The commands and events topics, keeping every record (see the module docstring)."""
    from kafka.admin import NewTopic

    from infra.topics import admin_client, ensure_topics

    admin = admin_client(settings)
    try:
        keep = {"retention.ms": "-1", "retention.bytes": "-1"}
        admin.create_topics(
            [
                NewTopic(t, settings.partitions, 1, topic_configs=keep)
                for t in (settings.commands_topic, settings.events_topic)
            ]
        )
    finally:
        admin.close()
    ensure_topics(settings)


def wait_for_events(settings: Settings, command_ids: set[str], timeout: float) -> float:
    """Wait until the events topic has an event of every command in ``command_ids`` (read
    from the end offsets at call time backwards is not possible, so from the start of the
    topic in big fetches); the seconds it took."""
    from kafka import TopicPartition

    from infra.clients import consumer as kafka_consumer

    started = time.monotonic()
    consumer = kafka_consumer(
        settings,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=10_000,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        tps = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        missing = set(command_ids)
        needles = {c.encode(): c for c in missing}
        while missing:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"no events for {sorted(missing)} within {timeout:.0f}s")
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    if b"sentinel-" in record.value:
                        for needle, command_id in needles.items():
                            if needle in record.value:
                                missing.discard(command_id)
        return time.monotonic() - started
    finally:
        consumer.close()


def measure(settings: Settings, label: str, stack: contextlib.ExitStack) -> tuple[dict, Any]:
    """Cold-start a worker and an API on the log so far; their figures, and the worker
    (left running for the next stretch)."""
    started = time.monotonic()
    worker = stack.enter_context(product.worker(settings, None, name=f"year-worker-{label}"))
    wait_worker_ready(settings.worker_web_port, worker, timeout=3_600)
    recovery = time.monotonic() - started
    worker_rss = settle_rss(worker.pid, seconds=3.0)
    bootstrap, api_rss, state = _api_bootstrap(settings, f"api-{label}", settle_s=3.0)
    body = state.json()
    figures = {
        "snapshot KiB": round(len(state.content) / 1024, 1),
        "emergencies in snapshot": len(body["emergencies"]),
        "worker recovery s": round(recovery, 1),
        "worker RSS MiB": round(worker_rss / 2**20, 1),
        "read model bootstrap s": round(bootstrap, 1),
        "API RSS MiB": round(api_rss / 2**20, 1),
    }
    return figures, worker


def run_pipeline(bootstrap: str, days: int = 365, per_day: int = 1_000) -> list[Row]:
    """Through the real pipeline (``--pipeline``): day one, measure, the rest of the
    ``days``, measure again. A real worker decides every command (about 90 commands/s on
    the loaded machine, so hours for a month or more); ``make bench`` runs ``run``."""
    settings = product.bench_settings(
        bootstrap,
        partitions=4,
        # the generator sends the sweeps (in simulated time) and the GPS fixes: the worker's
        # own timers would add wall-clock commands of their own
        archive_sweep_s=1e6,
        tick_seconds=1e6,
    )
    create_topics(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=days)
    traffic = CompressedTime(start, per_day=per_day)
    rows: list[Row] = []
    params = {"days": days, "per day": per_day}
    with contextlib.ExitStack() as stack:
        worker = stack.enter_context(product.worker(settings, None, name="year-worker-first"))
        sent = produce(settings, itertools.chain(traffic.fleet(), traffic.until(start)))
        for label, end in (("after 1 day", start + timedelta(days=1)), (f"after {days} days", now)):
            began = time.monotonic()
            sent += produce(settings, traffic.until(end))
            sentinels = traffic.sentinels(end)
            produce(settings, iter([(at, r, v) for at, r, v, _ in sentinels]))
            wait_for_events(settings, {c for *_, c in sentinels}, timeout=6 * 3_600)
            took = time.monotonic() - began
            stop(worker, timeout=60)
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            figures, worker = measure(settings, label.replace(" ", "-"), stack)
            figures.update(
                {
                    "commands": sent,
                    "emergencies": traffic.counts["emergencies"],
                    "worker s": round(took, 1),
                    "load avg": load,
                }
            )
            rows.append(Row("compressed year, pipeline", label, dict(params), figures))
            log.info("%s: %s", label, figures)
            print(f"   {label}: {figures}", flush=True)
    return rows


# --- the read model alone (issue 16: checkpoints) -----------------------------------------
#
# ``python -m tests.benchmarks.year --readmodel [--days N]`` times only the API's bootstrap,
# on an events log built without a worker process: each command of the compressed year is
# decided in-process by the worker's own code (``streams.processing.decide_command`` against
# a dict table, the record time as "now") and its events are written to ``dispatch.events``
# with the command's record time. A month's log takes minutes this way, not the hours the
# loaded worker needs; the read model folds the same events the worker would have written.


def decide_into_events(
    settings: Settings, records: Iterator[tuple[int, str, bytes]], state: Any, router: Any
) -> int:
    """Decide ``records`` (ms, region, command) against ``state``; write their events. The
    number of events written."""
    from infra.clients import producer as kafka_producer
    from infra.topics import kafka_python_partitioner
    from streams.processing import decide_command

    producer = kafka_producer(
        settings,
        acks=1,
        linger_ms=20,
        batch_size=512 * 1024,
        partitioner=kafka_python_partitioner(settings),
    )
    written = 0
    try:
        for at, region, value in records:
            outcome = decide_command(state, router, settings.tick_seconds, value, at / 1000)
            for event in outcome.events if outcome is not None else ():
                producer.send(
                    settings.events_topic, key=region.encode(), value=encode(event), timestamp_ms=at
                )
                written += 1
        producer.flush(300)
    finally:
        producer.close(10)
    return written


def _checkpoint_topic_end(settings: Settings) -> tuple[int, int]:
    """(end offset, bytes of the last checkpoint) of the read model's checkpoint topic."""
    from kafka import TopicPartition

    from infra.clients import consumer as kafka_consumer

    consumer = kafka_consumer(
        settings, group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=1 << 26
    )
    try:
        if not consumer.partitions_for_topic(settings.readmodel_topic):
            return 0, 0
        tp = TopicPartition(settings.readmodel_topic, 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        if end == 0:
            return 0, 0
        consumer.seek(tp, end - 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                return end, len(batch[-1].value)
        return end, 0
    finally:
        consumer.close()


def _api_bootstrap(
    settings: Settings, label: str, settle_s: float = 2.0
) -> tuple[float, int, httpx.Response]:
    """Cold-start an API on the log: (seconds to /readyz, RSS bytes, its /api/state)."""
    started = time.monotonic()
    with product.api(settings, None, name=f"year-{label}") as (api, port):
        wait_http(port, "/readyz", api, timeout=3_600)  # product.api gives up on it at 60 s
        took = time.monotonic() - started
        rss = settle_rss(api.pid, seconds=settle_s)
        token = settings.authority_token.get_secret_value()
        state = httpx.get(
            f"http://127.0.0.1:{port}/api/state",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        state.raise_for_status()
    return took, rss, state


def _write_checkpoint(settings: Settings, label: str) -> int:
    """Run an API until it has written a checkpoint of the whole log; its bytes."""
    before, _ = _checkpoint_topic_end(settings)
    writer = settings.model_copy(update={"readmodel_checkpoint_s": 1.0})
    with product.api(writer, None, name=f"year-readmodel-writer-{label}") as (api, port):
        wait_http(port, "/readyz", api, timeout=3_600)
        deadline = time.monotonic() + 120
        while True:
            end, size = _checkpoint_topic_end(settings)
            if end > before:
                return size
            if time.monotonic() > deadline:
                raise TimeoutError("the API wrote no checkpoint within 120 s")
            time.sleep(0.5)


def run_readmodel(bootstrap: str, days: int = 30, per_day: int = 1_000) -> list[Row]:
    """After one day and after ``days``: the read model's cold bootstrap folding the whole
    log, and from a checkpoint an API wrote at the log's end."""
    from streams.routing import GraphRouter
    from streams.state import DispatchState

    settings = product.bench_settings(bootstrap, partitions=4)
    create_topics(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=days)
    traffic = CompressedTime(start, per_day=per_day)
    state, router = DispatchState({}), GraphRouter(load_network())
    events = decide_into_events(
        settings, itertools.chain(traffic.fleet(), traffic.until(start)), state, router
    )
    rows: list[Row] = []
    for label, end in (("after 1 day", start + timedelta(days=1)), (f"after {days} days", now)):
        began = time.monotonic()
        events += decide_into_events(settings, traffic.until(end), state, router)
        built = time.monotonic() - began
        figures = {
            "events": events,
            "emergencies": traffic.counts["emergencies"],
            "log built s": round(built, 1),
            **_readmodel_figures(settings, label.replace(" ", "-")),
        }
        rows.append(Row("compressed year, read model", label, {"days": days}, figures))
        print(f"   {label}: {figures}", flush=True)
    return rows


def _readmodel_figures(settings: Settings, key: str) -> dict[str, Any]:
    """Cold-start an API folding the whole log (checkpoints off), then one that writes a
    checkpoint at the log's end, then a cold one from that checkpoint: their figures."""
    full_s, full_rss, _ = _api_bootstrap(
        settings.model_copy(update={"readmodel_checkpoint_s": 0}), f"readmodel-{key}-full"
    )
    checkpoint_bytes = _write_checkpoint(settings, key)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    from_s, from_rss, snapshot = _api_bootstrap(settings, f"readmodel-{key}-checkpoint")
    return {
        "bootstrap full fold s": round(full_s, 2),
        "bootstrap from checkpoint s": round(from_s, 2),
        "API RSS full fold MiB": round(full_rss / 2**20, 1),
        "API RSS from checkpoint MiB": round(from_rss / 2**20, 1),
        "checkpoint KiB": round(checkpoint_bytes / 1024, 1),
        "snapshot KiB": round(len(snapshot.content) / 1024, 1),
        "emergencies in snapshot": len(snapshot.json()["emergencies"]),
        "load avg": load,
    }


# --- the worker alone (issue 16, part 1: recovery and RSS) --------------------------------
#
# ``python -m tests.benchmarks.year --worker [--days N]`` times the worker's cold start on a
# log built the same fast way, in-process, on a broker of its own: every command of the
# compressed year is written to ``dispatch.commands`` and decided by the worker's code
# against a dict table that keeps its writes (``Changelog``); the writes go to the worker's
# changelog topic as ``streams.processing.ChangelogTable.send_unsent`` sends them (JSON key,
# raw value, ``None`` for a delete, each to the command's partition), the events to
# ``dispatch.events``, the units to ``dispatch.units``, and the group's offsets of the
# commands topic are committed at its end, so the cold-started worker recovers the table and
# re-runs nothing. The worker's sweep timers are simulated too: ``archive_closed`` (the
# generator's) and ``expire_records`` every ``command_record_sweep_s`` of simulated time
# to each partition, its cutoff ``command_record_window_s`` before.
#
# Compaction in compressed time: the broker compacts only closed segments, and the worker's
# changelog rolls one every ``changelog_segment_ms`` (an hour). Kafka measures that on the
# records' timestamps, which here are simulated time, so the bench's changelog and units
# topics keep it and roll every simulated hour, or at 1 MiB; the cleaner runs as soon as
# 1% of a log is dirty, with no compaction lag, and drops a tombstone at its next pass
# (``COMPRESSED_CLEANER``). The bench waits until the cleaner has caught up (a full read of
# the changelog holds no more live values than the table's keys plus the records of the
# active segments) before it starts the worker.

COMPRESSED_CLEANER = {
    "cleanup.policy": "compact",
    "segment.bytes": str(1 << 20),
    "segment.ms": "3600000",  # the worker's (Settings.changelog_segment_ms), see above
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "0",
    "retention.ms": "-1",
}
PREFIXES = ("c:", "m:", "e:", "u:", "r:", "x:", "a:", "y:", "h:")


class Changelog(dict[str, Any]):
    """A dict table that keeps its writes, (partition, key, value or None), as the worker's
    ``ChangelogTable`` does; ``partition`` is the command's, set by the caller. It also
    keeps each command record's stamp (``streams.state.record_stamp``, read once when the
    record is written), in table order, for ``SweptState``."""

    def __init__(self, partition_of: Callable[[str], int] | None = None) -> None:
        super().__init__()
        self.partition = 0
        self.unsent: list[tuple[int, str, Any]] = []
        self.partition_of = partition_of or (lambda region: 0)
        self.stamps: dict[str, tuple[int, float] | None] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.unsent.append((self.partition, key, value))
        if key.startswith("c:"):
            from streams.state import record_stamp

            self.stamps[key] = record_stamp(value, self.partition_of)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.unsent.append((self.partition, key, None))
        self.stamps.pop(key, None)


def swept_state_class() -> type:
    """``SweptState``, built on first use (the module imports no worker code up front)."""
    from streams.state import DispatchState

    class SweptState(DispatchState):
        """The worker's state, with ``expire_records`` answered from the stamps the
        ``Changelog`` read as the records were written: the same keys deleted in the same
        (table) order as ``DispatchState.expire_records``, which reads every record's head
        on every sweep (cheap every 10 minutes of real time, but 576 sweeps per simulated
        day were half of the generator's time)."""

        table: Changelog

        def expire_records(
            self, partition: int, cutoff: float, partition_of: Callable[[str], int]
        ) -> int:
            expired = [
                key
                for key, stamp in self.table.stamps.items()
                if stamp is not None and stamp[0] == partition and stamp[1] < cutoff
            ]
            for key in expired:
                del self.table[key]
            return len(expired)

    return SweptState


def changelog_topic(settings: Settings) -> str:
    """The worker table's changelog topic (Faust: app id, table name, ``-changelog``)."""
    from streams.state import TABLE_NAME

    return f"{settings.app_id}-{TABLE_NAME}-changelog"


def by_prefix(keys: Iterator[str]) -> dict[str, int]:
    counts = dict.fromkeys(PREFIXES, 0)
    counts["other"] = 0
    for key in keys:
        prefix = key[:2]
        counts[prefix if prefix in counts else "other"] += 1
    return counts


@dataclass
class WorkerLog:
    """Decides commands in-process and writes what the worker would have written."""

    settings: Settings
    table: Changelog = field(default_factory=Changelog)
    written: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("commands", "changelog", "events", "units"), 0)
    )
    next_expiry_ms: int | None = None

    def __post_init__(self) -> None:
        from schemas.placement import partition_for
        from streams.ranking import DispatchPolicy
        from streams.routing import GraphRouter
        from streams.state import DispatchState

        s = self.settings
        policy = DispatchPolicy(
            mutual_aid_regions=s.regions,
            home_preference_s=s.mutual_aid_home_preference_s,
            coverage_margin_s=s.mutual_aid_coverage_margin_s,
        )
        self.partition_of = lambda region: partition_for(region, s.partitions, s.regions)
        self.table.partition_of = self.partition_of
        self.state: DispatchState = swept_state_class()(self.table, None, policy)
        self.router = GraphRouter(load_network())

    def with_expiry(
        self, records: Iterator[tuple[int, str, bytes]]
    ) -> Iterator[tuple[int, str, bytes]]:
        """``records`` with the worker's ``expire_records`` sweeps among them, in simulated
        time: every ``command_record_sweep_s`` one to each partition."""
        from schemas.commands import ExpireRecords
        from streams.app import sweep_region

        s = self.settings
        every_ms = int(s.command_record_sweep_s * 1000)
        for at, region, value in records:
            if self.next_expiry_ms is None:
                self.next_expiry_ms = at + every_ms
            while self.next_expiry_ms <= at:
                sweep_at = self.next_expiry_ms
                cutoff = datetime.fromtimestamp(sweep_at / 1000, UTC) - timedelta(
                    seconds=s.command_record_window_s
                )
                for partition in range(s.partitions):
                    sweep = ExpireRecords(
                        region=sweep_region(s, partition), cutoff=cutoff, issued_by="worker"
                    )
                    yield sweep_at, sweep.region, encode(sweep)
                self.next_expiry_ms += every_ms
            yield at, region, value

    def write(self, records: Iterator[tuple[int, str, bytes]]) -> None:
        """Decide ``records`` (ms, region, command) and write the commands, the table's
        writes, the events and units; then commit the worker group's commands offsets."""
        from collections import deque

        from kafka import TopicPartition

        from infra.clients import consumer as kafka_consumer
        from infra.clients import producer as kafka_producer
        from infra.topics import kafka_python_partitioner
        from streams.processing import decide_command
        from streams.state import encoded

        s = self.settings
        topic = changelog_topic(s)
        tps = [TopicPartition(s.commands_topic, p) for p in range(s.partitions)]
        reader = kafka_consumer(s, group_id=s.app_id, enable_auto_commit=False)
        try:
            offsets = dict(enumerate(reader.end_offsets(tps)[tp] for tp in tps))
        finally:
            reader.close()
        producer = kafka_producer(
            s,
            acks=1,
            linger_ms=50,
            batch_size=1 << 20,
            max_request_size=8 << 20,
            partitioner=kafka_python_partitioner(s),
        )
        send, n = producer.send, self.written
        try:
            for at, region, value in self.with_expiry(records):
                queue = deque([(region, value)])
                while queue:  # the saga's commands (mutual aid) follow their command
                    region, value = queue.popleft()
                    p = self.partition_of(region)
                    send(
                        s.commands_topic,
                        value=value,
                        key=region.encode(),
                        partition=p,
                        timestamp_ms=at,
                    )
                    source = (p, offsets[p])
                    offsets[p] += 1
                    n["commands"] += 1
                    if n["commands"] % 100_000 == 0:
                        log.info(
                            "decided %d commands, up to %s",
                            n["commands"],
                            datetime.fromtimestamp(at / 1000, UTC),
                        )
                    self.table.partition = p
                    outcome = decide_command(
                        self.state,
                        self.router,
                        s.tick_seconds,
                        value,
                        at / 1000,
                        source,
                        self.partition_of,
                    )
                    for part, key, text in self.table.unsent:
                        raw = (
                            None
                            if text is None
                            else text
                            if isinstance(text, bytes)
                            else text.encode()
                        )
                        send(
                            topic,
                            value=raw,
                            key=json.dumps(key).encode(),
                            partition=part,
                            timestamp_ms=at,
                        )
                    n["changelog"] += len(self.table.unsent)
                    self.table.unsent.clear()
                    if outcome is None:
                        continue
                    enc = encoded(outcome)
                    for event, text in zip(outcome.events, enc.events, strict=True):
                        send(
                            s.events_topic,
                            value=text.encode(),
                            key=event.region.encode(),
                            partition=self.partition_of(event.region),
                            timestamp_ms=at,
                        )
                    n["events"] += len(outcome.events)
                    for unit, text in zip(outcome.units, enc.units, strict=True):
                        send(
                            s.units_topic,
                            value=text.encode(),
                            key=unit.id.encode(),
                            timestamp_ms=at,
                        )
                    n["units"] += len(outcome.units)
                    queue.extend(
                        (c.region, t.encode())
                        for c, t in zip(outcome.commands, enc.commands, strict=True)
                    )
            producer.flush(600)
        finally:
            producer.close(10)
        self.commit(offsets)

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit the commands topic's ends for the worker's group (Faust's group is its
        app id), so the worker starts after the history it would have run."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        from infra.clients import consumer as kafka_consumer

        s = self.settings
        consumer = kafka_consumer(s, group_id=s.app_id, enable_auto_commit=False)
        try:
            consumer.assign([TopicPartition(s.commands_topic, p) for p in offsets])
            consumer.commit(
                {
                    TopicPartition(s.commands_topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
            )
        finally:
            consumer.close()


def deciding_settings(settings: Settings) -> Settings:
    """``settings`` with the worker's own tick and record sweep rates: the in-process worker
    decides and sweeps at those, in simulated time, while the cold-started one (whose timers
    the bench turns off) only recovers."""
    defaults = Settings()
    return settings.model_copy(
        update={
            "tick_seconds": defaults.tick_seconds,
            "command_record_sweep_s": defaults.command_record_sweep_s,
        }
    )


def create_compacted_topics(settings: Settings) -> None:
    """The worker's changelog and the units topic, compacted in compressed time."""
    from kafka.admin import NewTopic

    from infra.topics import admin_client

    admin = admin_client(settings)
    try:
        admin.create_topics(
            [
                NewTopic(t, settings.partitions, 1, topic_configs=COMPRESSED_CLEANER)
                for t in (changelog_topic(settings), settings.units_topic)
            ]
        )
    finally:
        admin.close()


def read_changelog(settings: Settings) -> dict[str, Any]:
    """Read the whole changelog as the worker's recovery does: records, tombstones, bytes,
    and the live values by key prefix."""
    from kafka import TopicPartition

    from infra.clients import consumer as kafka_consumer

    consumer = kafka_consumer(
        settings,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=50_000,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    topic = changelog_topic(settings)
    records = tombstones = size = 0
    keys: list[str] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + 600
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over 600 s")
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    records += 1
                    size += len(record.key or b"") + len(record.value or b"")
                    if record.value is None:
                        tombstones += 1
                    else:
                        keys.append(json.loads(record.key))
    finally:
        consumer.close()
    return {
        "records": records,
        "tombstones": tombstones,
        "bytes": size,
        "values": by_prefix(iter(keys)),
    }


def active_segment_records(log_dir: Path, topic: str, ends: dict[int, int]) -> int:
    """Records in each partition's active (last, never compacted) segment, summed: the
    segment files are named by their base offset."""
    total = 0
    for p, end in ends.items():
        bases = [int(f.stem) for f in (log_dir / f"{topic}-{p}").glob("*.log")]
        total += end - max(bases, default=0)
    return total


def wait_compacted(
    settings: Settings, log_dir: Path, live: int, timeout: float = 1_800
) -> dict[str, Any]:
    """Until the log cleaner has compacted the changelog: a full read holds no more live
    values than the table's ``live`` keys plus the records of the active segments (whose
    keys' older copies the cleaner keeps). The last read."""
    from kafka import TopicPartition

    from infra.clients import consumer as kafka_consumer

    topic = changelog_topic(settings)
    deadline = time.monotonic() + timeout
    while True:
        consumer = kafka_consumer(settings, group_id=None, enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
            ends = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()
        tail = active_segment_records(log_dir, topic, ends)
        read = read_changelog(settings)
        values = read["records"] - read["tombstones"]
        log.info(
            "changelog: %d records (%d tombstones), %d live keys, %d in active segments",
            read["records"],
            read["tombstones"],
            live,
            tail,
        )
        if values <= live + tail:
            read["active segment records"] = tail
            return read
        if time.monotonic() > deadline:
            raise TimeoutError(f"the log cleaner did not compact {topic} within {timeout:.0f}s")
        time.sleep(5)  # the cleaner's backoff is 15 s; each pass is checked by a full read


def _worker_cold_start(settings: Settings, label: str) -> tuple[float, int]:
    """Cold-start a worker on the log: (seconds to ``/dispatch/ready/``, RSS bytes)."""
    started = time.monotonic()
    with product.worker(settings, None, name=f"year-worker-{label}") as worker:
        wait_worker_ready(settings.worker_web_port, worker, timeout=3_600)
        took = time.monotonic() - started
        rss = settle_rss(worker.pid, seconds=3.0)
    return took, rss


def run(days: int = 365, per_day: int = 1_000) -> list[Row]:
    """``make bench``'s year, on a broker of its own (a year of records kept forever has no
    place on a shared broker, and the cleaner's wait reads its log directory): the log built
    in-process as ``--worker`` builds it, and after one day and after ``days`` the worker's
    cold start (``--worker``) and the read model's (``--readmodel``, on the events the same
    run wrote). Their rows, and one "compressed year" row per stretch with the figures of
    ``BOUNDED`` for ``make bench``'s 2x check."""
    with own_broker("dispatchwire-year-kafka-") as broker:
        return _run_worker(
            broker.bootstrap, broker.data_dir / "kraft", days, per_day, readmodel=True
        )


def year_row(label: str, params: dict[str, Any], worker: Row, readmodel: Row) -> Row:
    """The figures ``make bench`` bounds (``BOUNDED``), from one stretch's worker and read
    model rows. The read model's bootstrap and RSS are those from a checkpoint, as an API
    restarts in service; its whole-log fold (a first start) is beside them, not bounded."""
    w, r = worker.metrics, readmodel.metrics
    figures = {
        "snapshot KiB": r["snapshot KiB"],
        "emergencies in snapshot": r["emergencies in snapshot"],
        "worker recovery s": w["worker recovery s"],
        "worker RSS MiB": w["worker RSS MiB"],
        "read model bootstrap s": r["bootstrap from checkpoint s"],
        "API RSS MiB": r["API RSS from checkpoint MiB"],
        "read model full fold s": r["bootstrap full fold s"],
        "API RSS full fold MiB": r["API RSS full fold MiB"],
        "load avg": r["load avg"],
    }
    return Row("compressed year", label, dict(params), figures)


def run_worker(days: int = 90, per_day: int = 1_000, every: int = 0) -> list[Row]:
    """On a broker of its own: after one day (and every ``every`` days) and after ``days``,
    the worker's cold start on the compacted changelog the in-process worker wrote."""
    with own_broker("dispatchwire-year-kafka-") as broker:
        log_dir = broker.data_dir / "kraft"
        return _run_worker(broker.bootstrap, log_dir, days, per_day, every=every)


def stretches(start: datetime, days: int, every: int = 0) -> list[tuple[str, datetime]]:
    """Where to measure: after one day, after every ``every`` days (0: never) and after
    ``days``, which end now."""
    ends = [1, *range(every, days, every), days] if every else [1, days]
    return [
        (f"after {d} day{'s' if d > 1 else ''}", start + timedelta(days=d))
        for d in dict.fromkeys(ends)
    ]


def _run_worker(
    bootstrap: str,
    log_dir: Path,
    days: int,
    per_day: int,
    readmodel: bool = False,
    every: int = 0,
) -> list[Row]:
    settings = product.bench_settings(
        bootstrap,
        partitions=4,
        # the generator sends the sweeps and moves in simulated time: the cold worker's own
        # timers would add wall-clock commands of their own
        archive_sweep_s=1e6,
        tick_seconds=1e6,
        command_record_sweep_s=1e6,
    )
    deciding = deciding_settings(settings)
    create_compacted_topics(settings)  # before ensure_topics (create_topics) makes units'
    create_topics(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=days)
    traffic = CompressedTime(start, per_day=per_day)
    worker_log = WorkerLog(deciding)
    worker_log.write(itertools.chain(traffic.fleet(), traffic.until(start)))
    rows: list[Row] = []
    for label, end in stretches(start, days, every):
        began = time.monotonic()
        worker_log.write(traffic.until(end))
        built = time.monotonic() - began
        began = time.monotonic()
        read = wait_compacted(settings, log_dir, len(worker_log.table))
        compacted = time.monotonic() - began
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        recovery, rss = _worker_cold_start(settings, label.replace(" ", "-"))
        figures = {
            "emergencies": traffic.counts["emergencies"],
            **{f"{k} written": v for k, v in worker_log.written.items()},
            "log built s": round(built, 1),
            "cleaner wait s": round(compacted, 1),
            "table keys": len(worker_log.table),
            "table by prefix": by_prefix(iter(worker_log.table)),
            "changelog records read": read["records"],
            "changelog tombstones": read["tombstones"],
            "changelog KiB": round(read["bytes"] / 1024, 1),
            "changelog values by prefix": read["values"],
            "active segment records": read["active segment records"],
            "worker recovery s": round(recovery, 2),
            "worker RSS MiB": round(rss / 2**20, 1),
            "load avg": load,
        }
        params = {"days": days, "per day": per_day}
        worker = Row("compressed year, worker", label, dict(params), figures)
        rows.append(worker)
        print(f"   {label}: {figures}", flush=True)
        if readmodel:
            events = {"events": worker_log.written["events"]}
            key = label.replace(" ", "-")
            model = Row(
                "compressed year, read model",
                label,
                dict(params),
                {**events, **_readmodel_figures(settings, key)},
            )
            print(f"   {label}: {model.metrics}", flush=True)
            rows += [model, year_row(label, params, worker, model)]
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.year")
    parser.add_argument("--readmodel", action="store_true", help="the read model's bootstrap only")
    parser.add_argument("--worker", action="store_true", help="the worker's cold start only")
    parser.add_argument(
        "--pipeline", action="store_true", help="through a real worker (hours), at the broker"
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=1_000)
    parser.add_argument(
        "--every", type=int, default=0, help="--worker: measure every N days on the way too"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.worker:
        run_worker(args.days, args.per_day, args.every)
    elif args.readmodel:
        with own_broker("dispatchwire-year-kafka-") as broker:
            run_readmodel(broker.bootstrap, args.days, args.per_day)
    elif args.pipeline:
        target = os.environ.get("DISPATCHWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        run_pipeline(target, args.days, args.per_day)
    else:
        for row in run(args.days, args.per_day):
            if row.bench == "compressed year":
                print(f"   {row.subject}: {row.metrics}", flush=True)
