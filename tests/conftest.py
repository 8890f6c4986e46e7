"""Shared fixtures: one real Kafka broker per test session, own topics per test.

Set DISPATCHWIRE_KAFKA_BOOTSTRAP to use a running broker; otherwise the session starts
its own (fetched into the cache like ``dispatchwire kafka up``) on a free loopback port
and stops it at the end, pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dispatchwire.settings import Settings
from infra.kafka import free_port, scratch_broker
from infra.topics import ensure_topics

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("DISPATCHWIRE_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    with sigterm_unwinds(), scratch_broker("dispatchwire-test-kafka-") as broker:
        yield broker.bootstrap


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """A SIGTERM (CI timeout, `kill`) would end pytest without teardown and leave a broker
    running; inside this block it raises KeyboardInterrupt instead, so pytest unwinds and the
    fixture's ``finally`` stops what it started."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def make_settings(kafka_bootstrap: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings factory: each call gets topics and a Faust app id of its own."""

    def factory(**overrides: object) -> Settings:
        tag = uuid.uuid4().hex[:10]
        values: dict[str, object] = {
            "kafka_bootstrap": kafka_bootstrap,
            "topic_prefix": f"t{tag}.",
            "app_id": f"dw-test-{tag}",
            "data_dir": tmp_path / f"data-{tag}",
            "sink_db": tmp_path / f"data-{tag}" / "sink.duckdb",
            "partitions": 2,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    s = make_settings()
    ensure_topics(s)
    return s


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def wait_for(
    condition: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition",
) -> object:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child ``dispatchwire`` process see ``settings``."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        elif isinstance(value, (tuple, list)):
            import json

            value = json.dumps(list(value))
        env[f"DISPATCHWIRE_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """A ``dispatchwire worker`` child process (see the ``running_worker`` fixture).

    ``url`` is its introspection server: ``GET /dispatch/ready/`` (200 once it owns its
    partitions and has recovered its table) and ``GET /dispatch/state/`` (the table's
    emergencies and units, shaped like ``Projection.as_json()``).
    """

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        ready_timeout: float = 90.0,
        command: tuple[str, ...] = (sys.executable, "-m", "dispatchwire", "worker"),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.command = command  # a test may run a variant of the worker (same settings, port)
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> WorkerProcess:
        assert not self.alive(), "worker already running"
        self.port = free_port()
        env = settings_env(self.settings)
        env["DISPATCHWIRE_WORKER_WEB_PORT"] = str(self.port)
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                list(self.command),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    def _ready(self) -> bool:
        if not self.alive():
            raise AssertionError(f"worker exited early:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/dispatch/ready/", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self) -> None:
        try:
            wait_for(
                self._ready,
                timeout=self.ready_timeout,
                interval=0.2,
                message="the worker to own its partitions",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{self.log_tail()}") from None

    def state(self) -> dict:
        response = httpx.get(f"{self.url}/dispatch/state/", timeout=10.0)
        response.raise_for_status()
        return response.json()

    def _signal(self, sig: int, timeout: float) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown: the worker commits and leaves the group)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing flushed or committed."""
        self._signal(signal.SIGKILL, 10.0)

    def restart(self) -> WorkerProcess:
        self.stop()
        return self.start()


@pytest.fixture
def running_worker(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerProcess]]:
    """Factory: ``running_worker(settings)`` starts ``dispatchwire worker`` with those settings
    and returns once it really consumes (its partitions assigned, its table recovered).
    The handle has ``.stop()`` (SIGTERM), ``.kill()`` (SIGKILL), ``.restart()``, ``.url`` and
    ``.state()``; every worker is killed at teardown. Topics must exist (use ``settings``)."""
    workers: list[WorkerProcess] = []

    def factory(settings: Settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker.start()

    yield factory
    for worker in workers:
        worker.kill()
