"""The stack the fault cases break: an own Kafka broker, the worker, the API and the sink,
each a real process started through the ``dispatchwire`` CLI, each SIGKILL-able.

``ClusterStack`` is the same on a 3-node ``LocalCluster`` of its own (``FaultCluster``)
with two workers in one consumer group (``WorkerGroup``) and two API replicas."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from aiokafka.client import AIOKafkaClient, CoordinationType

from dispatchwire.settings import Settings
from infra.cluster import ClusterNode, LocalCluster
from infra.kafka import KafkaDistribution, LocalBroker, free_port
from schemas.geo import load_network
from schemas.placement import partition_for
from streams.seed import fleet, register_commands
from tests.conftest import WorkerProcess, settings_env, wait_for
from tests.streams.helpers import Commands


class FaultBroker:
    """A broker of the fault suite's own (never the shared one): SIGKILL and restart it on
    the same ports and data, as a crashed and restarted Kafka node."""

    def __init__(self, data_dir: Path, heap: str = "768m") -> None:
        base = Settings()
        self.broker = LocalBroker(
            distribution=KafkaDistribution(base.kafka_version, base.cache_dir),
            data_dir=data_dir,
            port=free_port(),
            controller_port=free_port(),
            heap=heap,
        )

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def start(self) -> float:
        """Start (or restart) it; returns the seconds until it answered metadata requests."""
        started = time.monotonic()
        self.broker.start(timeout=120)
        return time.monotonic() - started

    def alive(self) -> bool:
        return self.broker.running_pid() is not None

    def kill(self) -> None:
        kill_broker(self.broker)

    def stop(self) -> None:
        self.broker.stop()


def kill_broker(broker: LocalBroker) -> None:
    """SIGKILL a local Kafka node and forget its process, so ``start`` can restart it."""
    pid = broker.running_pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: broker.running_pid() is None, timeout=20, message="the broker to die")
    proc = broker._proc
    if proc is not None:
        proc.wait(10)
        broker._proc = None
    broker.pid_file.unlink(missing_ok=True)


class FaultCluster:
    """Three KRaft nodes of the cluster cases' own, on free loopback ports (never the shared
    broker): SIGKILL, restart, SIGSTOP and SIGCONT any one node."""

    def __init__(self, data_dir: Path, nodes: int = 3, heap: str = "384m") -> None:
        base = Settings()
        self.cluster = LocalCluster(
            distribution=KafkaDistribution(base.kafka_version, base.cache_dir),
            data_dir=data_dir,
            ports=[(free_port(), free_port()) for _ in range(nodes)],
            heap=heap,
        )

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def node(self, node_id: int) -> ClusterNode:
        return next(n for n in self.cluster.nodes if n.node_id == node_id)

    def start(self) -> float:
        started = time.monotonic()
        self.cluster.start(timeout=180)
        return time.monotonic() - started

    def alive(self) -> bool:
        return len(self.cluster.running()) == len(self.cluster.nodes)

    def restart_dead(self) -> float:
        """Start the nodes that are not running; seconds until all are in the metadata."""
        started = time.monotonic()
        for node in self.cluster.nodes:
            if node.running_pid() is None:
                node.start(timeout=120)
        wanted = {n.node_id for n in self.cluster.nodes}
        wait_for(
            lambda: self.cluster.brokers_in_metadata() == wanted,
            timeout=120,
            interval=0.5,
            message="every node back in the cluster's metadata",
        )
        return time.monotonic() - started

    def kill(self, node_id: int) -> None:
        kill_broker(self.node(node_id))

    def signal(self, node_id: int, sig: int) -> None:
        """SIGSTOP / SIGCONT a node's process group (the JVM is its group's leader)."""
        pid = self.node(node_id).running_pid()
        assert pid is not None, f"node {node_id} is not running"
        os.killpg(pid, sig)

    def pause(self, node_id: int) -> None:
        """SIGSTOP a node and wait until the kernel shows its process stopped (a request sent
        right after the signal could otherwise still be answered)."""
        self.signal(node_id, signal.SIGSTOP)
        wait_for(lambda: self.paused(node_id), timeout=10, message=f"node {node_id} stopped")

    def paused(self, node_id: int) -> bool:
        """Whether the kernel shows the node's process stopped now."""
        status = Path(f"/proc/{self.node(node_id).running_pid()}/status")
        return "\nState:\tT" in status.read_text()

    def leader(self, topic: str, partition: int) -> int:
        """The node id leading ``topic``'s ``partition`` now."""
        return self.leaders(topic)[partition]

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> the node id leading it now, for every partition of ``topic``."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            described = admin.describe_topics([topic])[0]
        finally:
            admin.close()
        return {int(p["partition_index"]): int(p["leader_id"]) for p in described["partitions"]}

    def group_coordinator(self, group_id: str) -> int:
        """The node id the broker names as coordinator of consumer group ``group_id`` now
        (a FindCoordinator request, as the group's members send)."""
        return asyncio.run(self._find_coordinator(group_id))

    async def _find_coordinator(self, group_id: str) -> int:
        client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        await client.bootstrap()
        try:
            return int(await client.coordinator_lookup(CoordinationType.GROUP, group_id))
        finally:
            await client.close()

    def stop(self) -> None:
        for node in self.cluster.nodes:  # a paused node would never stop
            pid = node.running_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGCONT)
        self.cluster.stop()


class ChildProcess:
    """A ``dispatchwire <part>`` child in its own process group, logging to a file."""

    def __init__(
        self, settings: Settings, log_path: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.args = args
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> ChildProcess:
        assert not self.alive(), f"{self.args} already running"
        env = {**settings_env(self.settings), **self.extra_env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dispatchwire", *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class ApiProcess(ChildProcess):
    """``dispatchwire api`` on a fixed free port, so a restarted API has the same URL."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.port = free_port()
        super().__init__(settings, log_path, "api", "--port", str(self.port))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        if not self.alive():
            raise AssertionError(f"api exited early:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start_ready(self, timeout: float = 60.0) -> ApiProcess:
        self.start()
        wait_for(self.ready, timeout=timeout, interval=0.1, message="the api to be ready")
        return self

    def state(self) -> dict:
        response = httpx.get(
            f"{self.url}/api/state", timeout=15.0, headers={"Authorization": "Bearer dev-authority"}
        )
        response.raise_for_status()
        return response.json()


class Stack:
    """Worker, API and (when a case asks) sink against the fault broker, on topics and a
    Faust app id of their own. ``ensure_up`` repairs whatever an earlier case left broken."""

    def __init__(self, broker: FaultBroker, settings: Settings, tmp: Path) -> None:
        self.broker = broker
        self.settings = settings
        self.tmp = tmp
        self.worker = WorkerProcess(settings, tmp / "worker.log", ready_timeout=120.0)
        self.api = ApiProcess(settings, tmp / "api.log")
        self.sink = ChildProcess(settings, tmp / "sink.log", "sink")
        self.units = register_commands(fleet(load_network()))

    def seed(self) -> None:
        commands = Commands(self.settings)
        try:
            commands.send_all(self.units)
        finally:
            commands.close()

    def ensure_up(self) -> None:
        if not self.broker.alive():
            self.broker.start()
        if not self.worker.alive():
            self.worker.start()
        if not self.api.alive():
            self.api.start_ready()

    def close(self) -> None:
        for part in (self.sink, self.api):
            part.kill()
        self.worker.kill()


class WorkerGroup:
    """The workers of one consumer group, read as one worker: ``state()`` is the union of
    what each holds for the partitions it owns now (its standby copies of the others'
    partitions are left out), ``start`` brings back the dead ones."""

    def __init__(self, settings: Settings, tmp: Path, size: int) -> None:
        self.settings = settings
        self.members = [
            WorkerProcess(settings, tmp / f"worker-{i + 1}.log", ready_timeout=180.0)
            for i in range(size)
        ]

    def alive(self) -> bool:
        return all(w.alive() for w in self.members)

    def start(self) -> WorkerGroup:
        """Start the dead members together (one group join, not a join per member) and
        wait until each is ready."""
        from concurrent.futures import ThreadPoolExecutor

        dead = [w for w in self.members if not w.alive()]
        if dead:
            with ThreadPoolExecutor(len(dead)) as pool:
                for future in [pool.submit(w.start) for w in dead]:
                    future.result()
        return self

    def kill(self) -> None:
        for worker in self.members:
            worker.kill()

    def wait_ready(self) -> None:
        for worker in self.members:
            worker.wait_ready()

    def ready_page(self, worker: WorkerProcess) -> dict:
        """``worker``'s ready page (``{"ready", "partitions", "reason"}``; empty if none)."""
        try:
            body = httpx.get(f"{worker.url}/dispatch/ready/", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return body if isinstance(body, dict) else {}

    def partitions(self, worker: WorkerProcess) -> list[int]:
        """The commands partitions ``worker`` owns (its ready page says; empty if none)."""
        return [int(p) for p in self.ready_page(worker).get("partitions", [])]

    def state(self) -> dict:
        merged: dict[str, list[dict]] = {"emergencies": [], "units": []}
        for worker in self.members:
            if not worker.alive():
                continue
            owned = set(self.partitions(worker))
            table = worker.state()
            for part in merged:
                merged[part] += [
                    e
                    for e in table[part]
                    if partition_for(e["region"], self.settings.partitions, self.settings.regions)
                    in owned
                ]
        for part in merged:  # an entity owned twice shows as a difference, never hidden
            merged[part].sort(key=lambda e: e["id"])
        return merged


class ClusterStack(Stack):
    """The stack on a ``FaultCluster``: ``workers`` workers in one group and ``apis`` API
    replicas; ``api`` is the first replica (the one the auditor asks for its state)."""

    def __init__(
        self, cluster: FaultCluster, settings: Settings, tmp: Path, workers: int = 2, apis: int = 2
    ) -> None:
        self.broker = cluster  # type: ignore[assignment]
        self.cluster = cluster
        self.settings = settings
        self.tmp = tmp
        self.workers = WorkerGroup(settings, tmp, workers)
        self.worker = self.workers  # type: ignore[assignment]
        self.apis = [ApiProcess(settings, tmp / f"api-{i + 1}.log") for i in range(apis)]
        self.api = self.apis[0]
        self.sink = ChildProcess(settings, tmp / "sink.log", "sink")
        self.units = register_commands(fleet(load_network()))

    @property
    def urls(self) -> list[str]:
        return [api.url for api in self.apis]

    def ensure_up(self) -> None:
        if not self.cluster.alive():
            self.cluster.restart_dead()
        self.workers.start()
        for api in self.apis:
            if not api.alive():
                api.start_ready()

    def close(self) -> None:
        self.sink.kill()
        for api in self.apis:
            api.kill()
        self.workers.kill()
