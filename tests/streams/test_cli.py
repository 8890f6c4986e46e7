"""``dispatchwire seed`` and ``simulate`` as a user runs them, against a real worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from schemas import UnitStatus
from tests.conftest import settings_env, wait_for
from tests.streams.helpers import EventLog

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def dispatchwire(settings, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dispatchwire", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_seed_is_idempotent_and_simulate_makes_traffic(settings, running_worker):
    running_worker(settings)
    log = EventLog(settings)
    try:
        assert "seeded 16 units in 4 regions" in dispatchwire(settings, "seed")
        wait_for(
            lambda: log.poll() and len(log.projection().units) == 16, message="16 registered units"
        )
        dispatchwire(settings, "seed")
        wait_for(lambda: len(log.poll()) >= 32, message="the second seed's outcomes")
        fold = log.projection()
        assert len(fold.units) == 16
        assert all(u.version == 1 and u.status == UnitStatus.AVAILABLE for u in fold.units.values())
        assert {u.region for u in fold.units.values()} == {"hki-nw", "hki-ne", "hki-sw", "hki-se"}

        out = dispatchwire(
            settings,
            "simulate",
            "--rate",
            "10",
            "--count",
            "3",
            "--auto",
            "--duration",
            "15",
            "--seed",
            "1",
        )
        assert "reported 3 emergencies" in out
        fold = log.projection()
        wait_for(
            lambda: log.poll() and len(log.projection().emergencies) == 3, message="three reports"
        )
        fold = log.projection()
        assert any(e.assigned_unit_id for e in fold.emergencies.values())  # --auto dispatched
    finally:
        log.close()


def test_worker_stops_cleanly_on_sigterm(settings, running_worker):
    worker = running_worker(settings)
    worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.log_tail()
