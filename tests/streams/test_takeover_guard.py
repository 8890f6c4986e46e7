"""Issue 14, the takeover stall: a worker that owns partitions it does not move says so on
its ready page and gets its group to rebalance (``streams.progress``).

The survivor of a worker SIGKILL sometimes owned the dead worker's partitions and answered
none of their commands for 90-180 s, with a ready page saying "200 ready". Here a worker's
consumer flow is stopped by hand (``tests/streams/stalling_worker.py``), the state that
stall left it in: before the guard the page stayed 200 and the command stayed unanswered.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dispatchwire.settings import Settings
from tests.conftest import WorkerProcess, wait_for
from tests.streams.conftest import fresh_settings
from tests.streams.helpers import Commands, EventLog, scripted_worker
from tests.streams.world import medical_report

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

STALL_TIMEOUT_S = 3.0


def stalling_worker(settings: Settings, log_path: Path, marker: Path) -> WorkerProcess:
    return scripted_worker(settings, log_path, "stalling_worker.py", {"STALL_MARKER": str(marker)})


def ready_page(worker: WorkerProcess) -> tuple[int, dict]:
    response = httpx.get(f"{worker.url}/dispatch/ready/", timeout=2.0)
    return response.status_code, response.json()


def test_a_worker_whose_partitions_do_not_move_says_so_and_gets_them_moving(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = fresh_settings(
        kafka_bootstrap, tmp_path, tick_seconds=60.0, worker_stall_timeout_s=STALL_TIMEOUT_S
    )
    region = settings.regions[0]
    marker = tmp_path / "stall"
    worker = stalling_worker(settings, tmp_path / "worker.log", marker)
    commands, events = Commands(settings), EventLog(settings)
    try:
        worker.start()
        first = medical_report(region=region)
        commands.send(first)
        events.wait_command(first.command_id, timeout=60)

        marker.touch()
        wait_for(lambda: "STALLED" in worker.log_tail(100_000), timeout=30, message="the stall")
        stuck = medical_report(region=region)
        commands.send(stuck)

        def says_stalled() -> dict | None:
            status, body = ready_page(worker)
            return body if status == 503 and "no progress" in body.get("reason", "") else None

        body = wait_for(
            says_stalled,
            timeout=STALL_TIMEOUT_S + 30,
            interval=0.2,
            message="the ready page to name the stalled partition",
        )
        assert "commands" in body["reason"], body
        assert body["partitions"], body
        # the rebalance it asked for resumes the flow: the command is answered after all
        events.wait_command(stuck.command_id, timeout=90)
        wait_for(lambda: ready_page(worker)[0] == 200, timeout=60, message="ready again")
        log = worker.log_tail(200_000)
        assert "worker stalled: no progress on commands" in log
    finally:
        worker.kill()
        commands.close()
        events.close()
