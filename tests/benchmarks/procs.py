"""Processes for the benchmarks: start pinned to a core, wait until they answer, stop them."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.kafka import LocalBroker

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SERVER_CORE = 0
CLIENT_CORE = 1


def cores() -> set[int]:
    return set(os.sched_getaffinity(0))


def _pin_and_raise(core: int | None) -> None:
    # Runs in the child before exec: own process group (so stopping it stops its children),
    # the fd soft limit raised to the hard limit, and one core where there is more than one.
    os.setsid()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if core is not None and core in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {core})


def spawn(
    args: Sequence[str],
    core: int | None,
    env: dict[str, str] | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    with open(log or os.devnull, "ab") as err:
        return subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=env,
            stdin=stdin,
            stdout=stdout or subprocess.DEVNULL,
            stderr=err,
            preexec_fn=lambda: _pin_and_raise(core),
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(
    args: Sequence[str], core: int | None, **kwargs: object
) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn(args, core, **kwargs)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        stop(proc)


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until ``GET path`` answers 2xx on loopback; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                s.sendall(request)
                head = s.recv(64)
                if head.split(b" ")[1:2] and head.split(b" ")[1].startswith(b"2"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered GET {path} on port {port} within {timeout}s")


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (all its threads, and its waited-for
    children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def settle_rss(pid: int, seconds: float = 1.0, step: float = 0.2) -> int:
    """RSS after it stops moving (or after ``seconds``)."""
    last = rss_bytes(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(step)
        current = rss_bytes(pid)
        if abs(current - last) < 64 * 1024:
            return current
        last = current
    return last


@contextlib.contextmanager
def own_broker(prefix: str = "dispatchwire-bench-kafka-") -> Iterator[LocalBroker]:
    """A fresh broker for one bench run (``infra.kafka.scratch_broker``). With
    ``DISPATCHWIRE_BENCH_PIN_BROKER=1`` it runs on the clients' core, leaving the server
    core to the worker and the API (README, "A city's fleet": over seven alternating pairs
    the pinned fleet p99 was lower in five and under 100 ms in three runs, against one
    unpinned run; the e2e p50 was slower pinned); unpinned by default."""
    from infra.kafka import scratch_broker

    with scratch_broker(prefix) as broker:
        if os.environ.get("DISPATCHWIRE_BENCH_PIN_BROKER") == "1":
            pin_all_threads(broker.running_pid(), CLIENT_CORE)
        yield broker


def pin_all_threads(pid: int | None, core: int) -> None:
    """Every thread of ``pid`` (a JVM has dozens) on ``core``; threads made later inherit it."""
    if pid is None or core not in os.sched_getaffinity(0):
        return
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), {core})
