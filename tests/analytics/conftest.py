"""Fixtures of the analytics tests: sink child processes, stopped however the test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dispatchwire.settings import Settings
from tests.conftest import settings_env


@pytest.fixture
def start_sink(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``dispatchwire sink`` for some settings in its own process group."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"sink-{len(procs)}.log", "wb")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatchwire", "sink", *args],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def run_cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "dispatchwire", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def stored_snapshot(settings: Settings, events: list, path: Path, duplicate_every: int = 0) -> Path:
    """Put ``events`` on the log, sink them in-process, and snapshot the result."""
    from analytics.sink import Sink
    from analytics.snapshot import take_snapshot
    from infra.topics import ensure_topics
    from tests.analytics.story import produce_events

    ensure_topics(settings)
    produce_events(settings, events, duplicate_every=duplicate_every)
    sink = Sink(settings)
    sink.open()
    try:
        sink.run(until_caught_up=True)
    finally:
        sink.close()
    return Path(take_snapshot(settings, path).path)
