"""Issue 10, item 5: the worker's ready page tells the truth through a broker outage.

The probe's worker stayed "200 ready" through a 30 s broker outage. This test starts a
broker of its own (never the session's), SIGKILLs it under a ready worker, and restarts it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from infra.kafka import LocalBroker, scratch_broker
from tests.conftest import WorkerProcess, wait_for
from tests.streams.conftest import fresh_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BROKER_TIMEOUT_S = 3.0


@pytest.fixture
def own_broker() -> Iterator[LocalBroker]:
    with scratch_broker("dispatchwire-readiness-kafka-", heap="384m") as broker:
        yield broker


def sigkill(broker: LocalBroker) -> None:
    pid = broker.running_pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    if broker._proc is not None:
        broker._proc.wait(30)
        broker._proc = None


def ready(worker: WorkerProcess) -> httpx.Response | None:
    try:
        return httpx.get(f"{worker.url}/dispatch/ready/", timeout=2.0)
    except httpx.HTTPError:
        return None


def test_ready_turns_503_while_the_broker_is_down_and_200_after(own_broker, tmp_path):
    settings = fresh_settings(
        own_broker.bootstrap, tmp_path, worker_broker_timeout_s=BROKER_TIMEOUT_S
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log", ready_timeout=120.0)
    try:
        worker.start()
        assert ready(worker).status_code == 200  # type: ignore[union-attr]
        sigkill(own_broker)

        def not_ready() -> httpx.Response | None:
            response = ready(worker)
            return response if response is not None and response.status_code == 503 else None

        response = wait_for(
            not_ready,
            timeout=BROKER_TIMEOUT_S + 20,
            interval=0.2,
            message="the ready page to say 503 without a broker",
        )
        body = response.json()  # type: ignore[attr-defined]
        assert body["ready"] is False and "broker" in body["reason"], body
        assert worker.alive()

        started = time.monotonic()
        own_broker.start()
        print(f"broker up again after {time.monotonic() - started:.1f}s")
        wait_for(
            lambda: (r := ready(worker)) is not None and r.status_code == 200,
            timeout=120,
            interval=0.2,
            message="the ready page to say 200 again",
        )
        print(f"worker ready {time.monotonic() - started:.1f}s after the broker restart")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{worker.log_tail()}") from None
    finally:
        worker.kill()
