"""Issue 12 item 9: ``make run``'s first screen shows no normal start-up noise.

Two sources filled it: setuptools' "Editable installation" warning on every
``pip install -e`` (the packaging config: ``package-dir`` at the project root), and
aiokafka's ``ERROR ... GroupCoordinatorNotAvailableError`` while a fresh broker creates
``__consumer_offsets`` (``dispatchwire run`` now waits for the group coordinator first).
The start-up test needs a broker that has never seen a consumer group, so it starts its
own on free ports and leaves the shared one alone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from infra.kafka import free_port, scratch_broker
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
NOISE = re.compile(r"\bERROR\b|\bWARNING\b|Traceback|Warning:")


def test_editable_install_prints_no_setuptools_warning(tmp_path: Path) -> None:
    """``pip install -e`` as the Makefile runs it (into a scratch prefix, no dependencies;
    ``--ignore-installed`` leaves the installed copy alone)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            "--prefix",
            str(tmp_path / "prefix"),
            "-e",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Editable installation" not in output, output
    assert not re.search(r"\w*Warning\b", output), output


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.kafka
@pytest.mark.slow
def test_run_on_a_fresh_broker_starts_without_error_or_warning_lines(tmp_path: Path) -> None:
    api_port, worker_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "DISPATCHWIRE_KAFKA_BOOTSTRAP": "",  # set below, once the broker has its port
            "DISPATCHWIRE_API_PORT": str(api_port),
            "DISPATCHWIRE_WORKER_WEB_PORT": str(worker_port),
            "DISPATCHWIRE_DATA_DIR": str(tmp_path / "data"),
            "DISPATCHWIRE_SINK_DB": str(tmp_path / "data" / "sink.duckdb"),
            "DISPATCHWIRE_LOG_LEVEL": "INFO",
        }
    )
    out_path = tmp_path / "run.out"
    proc = None
    with scratch_broker("dispatchwire-startup-kafka-", heap="512m") as broker:
        env["DISPATCHWIRE_KAFKA_BOOTSTRAP"] = broker.bootstrap
        try:
            with open(out_path, "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "dispatchwire", "run"],
                    env=env,
                    cwd=tmp_path,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

            def started() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"dispatchwire run exited:\n{out_path.read_text()}")
                return (
                    _ok(f"http://127.0.0.1:{worker_port}/dispatch/ready/")
                    and _ok(f"http://127.0.0.1:{api_port}/readyz")
                    and "analytics.sink: sink: " in out_path.read_text(errors="replace")
                )

            # the worker owns its partitions, the API is ready and the sink consumed the seed:
            # every consumer group has found its coordinator
            wait_for(started, timeout=150, interval=0.5, message="the whole pipeline up")
        finally:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
    screen = out_path.read_text(errors="replace")
    noise = [line for line in screen.splitlines() if NOISE.search(line)]
    assert not noise, "\n".join(noise)
    assert "dispatchwire is running" in screen


@pytest.mark.parametrize(("elapsed", "level"), [(0.0, "INFO"), (120.0, "ERROR")])
def test_group_coordinator_transient_is_info_during_startup_only(
    elapsed: float, level: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A part started on its own (not through ``dispatchwire run``) may still meet the
    transient: during start-up it is logged at INFO, later it keeps its ERROR."""
    import logging
    import time

    from dispatchwire import logs

    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    saved = list(logger.filters)
    try:
        logs.configure("INFO")
        for f in logger.filters:
            if isinstance(f, logs.StartupTransients):
                f.until = time.monotonic() + logs.STARTUP_S - elapsed
        with caplog.at_level(logging.INFO):
            logger.error(
                "Group Coordinator Request failed: %s",
                "[Error 15] GroupCoordinatorNotAvailableError",
            )
            logger.error("Group Coordinator Request failed: %s", "[Error 29] Authorization")
    finally:
        logger.filters[:] = saved
    transient, other = [r for r in caplog.records if r.name == logger.name]
    assert transient.levelname == level
    assert other.levelname == "ERROR"  # anything else keeps its level
