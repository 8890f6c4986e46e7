"""The stack the fault cases break: an own Kafka broker, the worker, the API and the sink,
each a real process started through the ``dispatchwire`` CLI, each SIGKILL-able."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dispatchwire.settings import Settings
from infra.kafka import KafkaDistribution, LocalBroker, free_port
from schemas.geo import load_network
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
            data_dir=data_dir, port=free_port(), controller_port=free_port(), heap=heap)

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
        pid = self.broker.running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            wait_for(lambda: self.broker.running_pid() is None, timeout=20,
                     message="the broker to die")
        proc = self.broker._proc
        if proc is not None:
            proc.wait(10)
            self.broker._proc = None
        self.broker.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        self.broker.stop()


class ChildProcess:
    """A ``dispatchwire <part>`` child in its own process group, logging to a file."""

    def __init__(self, settings: Settings, log_path: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
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
                [sys.executable, "-m", "dispatchwire", *self.args], env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
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
        response = httpx.get(f"{self.url}/api/state", timeout=15.0,
                             headers={"Authorization": "Bearer dev-authority"})
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
