"""Scale-out (issue 14, item 6): the worker with 1 and with 2 processes in one group, the
takeover when one of two dies, and the broker failover of a 3-node cluster.

- ``commands/s`` and ``worker CPU us/command``: pre-produced ``report_emergency``
  commands spread over the four regions (so over four partitions), the workers started
  and ready first; the rate comes from the first and last event's Kafka timestamps, the
  CPU from the workers' ``/proc/<pid>/stat`` (user + system) before and after. On this
  2-core machine the broker, the load and the workers share the cores, so the CPU per
  command is the scale figure: N workers on N free cores reach about N x 1e6 / CPU.
- ``takeover s``: two workers (standby replicas 1, then 0), SIGKILL of one; the seconds
  until a command for each of its regions, produced at the kill, has its event. Most of it
  is the group's session timeout (``streams.app.SESSION_TIMEOUT_S``) before the survivor is
  given the partitions; SIGTERM (the worker leaves the group) skips that wait.
- ``failover s``: a 3-node cluster of its own (RF 3, min.insync 2), acks=all writes in a
  loop; SIGKILL of the leader of the partition; seconds until writes are acknowledged
  again, and every acknowledged record read back (lost must be 0).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from dispatchwire.settings import Settings
from infra.kafka import free_port
from tests.benchmarks import product
from tests.benchmarks.procs import cpu_seconds, running
from tests.benchmarks.report import Row
from tests.benchmarks.throughput import _drop_topics

BENCH = "scale"
REGIONS = ("hki-nw", "hki-ne", "hki-sw", "hki-se")
TAKEOVER_WAIT_S = 90.0  # the target is 10 s; past this the takeover is reported as missing


def _command(region: str, command_id: str) -> bytes:
    from schemas.codec import encode
    from schemas.commands import ReportEmergency
    from schemas.entities import EmergencyType

    return encode(
        ReportEmergency(
            command_id=command_id,
            emergency_id=f"e-{command_id}",
            region=region,
            type=EmergencyType.FIRE,
            priority=2,
            lat=60.1699,
            lon=24.9384,
            issued_by="reporter",
            description="Smoke from a third-floor window, people inside",
        )
    )


def _producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    from infra.topics import kafka_python_partitioner

    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=20,
        partitioner=kafka_python_partitioner(settings),
    )


def _produce(settings: Settings, commands: list[tuple[str, bytes]]) -> None:
    producer = _producer(settings)
    try:
        for region, value in commands:
            producer.send(settings.commands_topic, key=region.encode(), value=value)
        producer.flush(120)
    finally:
        producer.close(10)


class _Events:
    """A reader of the events topic from its start: counts, first and last timestamp, and
    which command ids have an event."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            settings.events_topic,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=5_000,
        )
        self.count = 0
        self.first: int | None = None
        self.last: int | None = None
        self.commands: set[str] = set()

    def poll(self) -> None:
        import json

        for records in self.consumer.poll(timeout_ms=300).values():
            for record in records:
                self.count += 1
                self.first = record.timestamp if self.first is None else self.first
                self.last = record.timestamp
                try:
                    command_id = json.loads(record.value).get("command_id")
                except ValueError:
                    continue
                if command_id:
                    self.commands.add(command_id)

    def wait(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if done():
                return True
        return False

    def close(self) -> None:
        self.consumer.close()


def _ready_partitions(port: int) -> list[int] | None:
    import httpx

    try:
        response = httpx.get(f"http://127.0.0.1:{port}/dispatch/ready/", timeout=2.0)
    except httpx.HTTPError:
        return None
    return response.json().get("partitions") if response.status_code == 200 else None


def _wait_split(ports: list[int], partitions: int, timeout: float = 180.0) -> dict[int, list]:
    """Wait until the ready workers own every partition between them, each some."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = {port: _ready_partitions(port) for port in ports}
        if all(owned.values()) and sorted(p for v in owned.values() for p in v or []) == list(
            range(partitions)
        ):
            return owned  # type: ignore[return-value]
        time.sleep(0.3)  # polling the workers' ready pages
    raise TimeoutError(f"the workers did not split {partitions} partitions in {timeout:.0f}s")


def _settings(bootstrap: str, workers: int, standby: int | None = None) -> Settings:
    extra: dict[str, Any] = {"partitions": 4, "regions": REGIONS, "workers": workers}
    if standby is not None:
        extra["worker_standby_replicas"] = standby
    return product.bench_settings(bootstrap, **extra)


def _workers(settings: Settings, count: int, stack: Any) -> tuple[list[Any], list[int]]:
    procs, ports = [], []
    product.LOG_DIR.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        port = free_port()
        env = product.env_for(settings)
        env["DISPATCHWIRE_WORKER_WEB_PORT"] = str(port)
        procs.append(
            stack.enter_context(
                running(
                    [product.DISPATCHWIRE, "worker"],
                    None,
                    env=env,
                    log=product.LOG_DIR / f"scale-worker-{count}-{i + 1}.log",
                )
            )
        )
        ports.append(port)
    return procs, ports


def throughput(bootstrap: str, workers: int, count: int, standby: int | None = None) -> Row:
    import contextlib

    from infra.topics import ensure_topics

    settings = _settings(bootstrap, workers, standby)
    subject = (
        f"{workers} worker{'s' if workers > 1 else ''}, 4 partitions, standby "
        f"replicas {settings.worker_standby_replicas}"
    )
    tag = uuid.uuid4().hex[:6]
    events = None
    try:
        ensure_topics(settings)
        with contextlib.ExitStack() as stack:
            procs, ports = _workers(settings, workers, stack)
            _wait_split(ports, settings.partitions)
            cpu_before = sum(cpu_seconds(p.pid) for p in procs)
            events = _Events(settings)
            _produce(
                settings,
                [(REGIONS[n % 4], _command(REGIONS[n % 4], f"s{tag}-{n}")) for n in range(count)],
            )
            complete = events.wait(lambda: len(events.commands) >= count, timeout=300)
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
    except Exception as exc:
        return Row.not_measured(BENCH, subject, f"run failed: {exc!r}", commands=count)
    finally:
        if events is not None:
            events.close()
        _drop_topics(settings)
    span = ((events.last or 0) - (events.first or 0)) / 1000
    answered = len(events.commands)
    return Row(
        BENCH,
        subject,
        {"commands": count, "workers": workers},
        {
            "commands/s": answered / span if span > 0 else None,
            "worker CPU us/command": cpu * 1e6 / answered if answered else None,
            "answered": answered,
        },
        "" if complete else f"only {answered} of {count} answered in time",
    )


def takeover(bootstrap: str, standby: int, backlog: int, stop: int = signal.SIGKILL) -> Row:
    import contextlib

    from infra.topics import ensure_topics
    from schemas.placement import partition_for

    subject = f"worker {signal.Signals(stop).name}, 2 workers, standby replicas {standby}"
    settings = _settings(bootstrap, 2, standby)
    tag = uuid.uuid4().hex[:6]
    events = None
    try:
        ensure_topics(settings)
        with contextlib.ExitStack() as stack:
            procs, ports = _workers(settings, 2, stack)
            _wait_split(ports, settings.partitions)
            # a table to take over: `backlog` emergencies, all answered before the kill
            events = _Events(settings)
            _produce(
                settings,
                [(REGIONS[n % 4], _command(REGIONS[n % 4], f"s{tag}-{n}")) for n in range(backlog)],
            )
            if not events.wait(lambda: len(events.commands) >= backlog, timeout=300):
                raise TimeoutError(f"{len(events.commands)} of {backlog} answered")
            owned = _wait_split(ports, settings.partitions)
            victim = 0
            moved = owned[ports[victim]]
            regions = [
                r for r in REGIONS if partition_for(r, settings.partitions, REGIONS) in moved
            ]
            os.killpg(procs[victim].pid, stop)
            killed = time.monotonic()
            probes = [f"s{tag}-probe-{r}" for r in regions]
            _produce(settings, [(r, _command(r, p)) for r, p in zip(regions, probes, strict=True)])
            done = events.wait(
                lambda: all(p in events.commands for p in probes), timeout=TAKEOVER_WAIT_S
            )
            seconds = time.monotonic() - killed
    except Exception as exc:
        return Row.not_measured(BENCH, subject, f"run failed: {exc!r}", standby=standby)
    finally:
        if events is not None:
            events.close()
        _drop_topics(settings)
    return Row(
        BENCH,
        subject,
        {"standby": standby, "table entries": backlog * 2},
        {"takeover s": seconds if done else None, "partitions moved": len(moved)},
        "" if done else f"no takeover within {TAKEOVER_WAIT_S:.0f} s",
    )


def failover(records: int = 3_000) -> Row:
    """acks=all writes to a 3-node cluster of its own; SIGKILL of the partition's leader."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    from tests.faults.stack import FaultCluster

    subject = "SIGKILL of the leader, 3 nodes, RF 3, min.insync 2, acks=all"
    data_dir = Path(tempfile.mkdtemp(prefix="dispatchwire-bench-cluster-"))
    cluster = FaultCluster(data_dir)
    topic = f"bench-failover-{uuid.uuid4().hex[:6]}"
    try:
        cluster.start()
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, 1, 3, topic_configs={"min.insync.replicas": "2"})])
        finally:
            admin.close()
        producer = KafkaProducer(
            bootstrap_servers=cluster.bootstrap,
            acks="all",
            enable_idempotence=True,
            retries=1_000_000,
            request_timeout_ms=5_000,
            delivery_timeout_ms=120_000,
            max_in_flight_requests_per_connection=1,
        )
        acked: list[int] = []
        killed_at = None
        first_ack_after: float | None = None
        deadline = time.monotonic() + 240
        leader = None
        n = 0
        while len(acked) < records and time.monotonic() < deadline:
            if killed_at is None and len(acked) >= records // 3:
                leader = cluster.leader(topic, 0)
                cluster.kill(leader)
                killed_at = time.monotonic()
            try:
                producer.send(topic, value=str(n).encode()).get(timeout=30)
            except KafkaError:  # a failed write is simply not acknowledged
                n += 1
                continue
            if killed_at is not None and first_ack_after is None:
                first_ack_after = time.monotonic()
            acked.append(n)
            n += 1
        producer.close(10)
        consumer = KafkaConsumer(
            bootstrap_servers=cluster.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=10_000,
        )
        consumer.assign([TopicPartition(topic, 0)])
        seen = [int(r.value) for r in consumer]
        consumer.close()
    except Exception as exc:
        return Row.not_measured(BENCH, subject, f"run failed: {exc!r}")
    finally:
        cluster.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    lost = len(set(acked) - set(seen))
    doubled = len(seen) - len(set(seen))
    seconds = first_ack_after - killed_at if first_ack_after and killed_at else None
    return Row(
        BENCH,
        subject,
        {"records": records, "killed node": leader},
        {"failover s": seconds, "acknowledged": len(acked), "lost": lost, "doubled": doubled},
        "",
    )


def run(bootstrap: str, count: int, backlog: int, cluster: bool = True) -> list[Row]:
    why = product.available("worker")
    if why:
        return [Row.not_measured(BENCH, "workers", why)]
    rows = [
        throughput(bootstrap, 1, count),
        throughput(bootstrap, 2, count),
        throughput(bootstrap, 2, count, standby=0),
    ]
    rows += [
        takeover(bootstrap, 1, backlog),
        takeover(bootstrap, 0, backlog),
        takeover(bootstrap, 1, backlog, stop=signal.SIGTERM),
    ]
    if cluster:
        rows.append(failover())
    return rows
