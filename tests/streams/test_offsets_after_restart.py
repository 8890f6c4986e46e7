"""Issue 10, item 2: after a worker restart under load the group's committed offset crawled.

The probe saw one commands partition advance by about one offset per commit interval while
600-1,500 records sat uncommitted, even idle, so the next crash replayed minutes of commands.
Here: a steady load, two restarts of the worker while it runs, then the load stops and every
commands partition's committed offset must reach the partition's end within a few commit
intervals of the last command's outcome.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest
from faust.types import TP
from kafka import KafkaProducer

from dispatchwire.settings import Settings
from schemas import EmergencyType, ReportEmergency, SetUnitStatus, UnitStatus, encode
from streams.app import create_faust_app
from streams.routing import Router
from tests.conftest import wait_for
from tests.streams.helpers import EventLog
from tests.streams.kafka_offsets import lagging_partitions

# Faust's default broker_commit_interval (the worker does not change it).
COMMIT_INTERVAL_S = 2.8
RATE_PER_S = 150
REGIONS = [f"offsets-{n}" for n in range(8)]  # spread over both commands partitions


class SteadyLoad(threading.Thread):
    """Sends reports and (rejected) unit status changes at a steady rate until stopped."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5
        )
        self.command_ids: list[str] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            regions = itertools.cycle(REGIONS)
            n = 0
            started = time.monotonic()
            while not self.stopping.is_set():
                region = next(regions)
                cmd: object
                if n % 3:
                    cmd = ReportEmergency(
                        region=region, type=EmergencyType.FIRE, priority=3, lat=60.17, lon=24.94
                    )
                else:
                    cmd = SetUnitStatus(
                        region=region, unit_id="no-such-unit", status=UnitStatus.AVAILABLE
                    )
                self.producer.send(
                    self.settings.commands_topic, key=region.encode(), value=encode(cmd)
                )  # type: ignore[arg-type]
                self.command_ids.append(cmd.command_id)  # type: ignore[attr-defined]
                n += 1
                # pace to RATE_PER_S (a rate, not a wait for a condition)
                ahead = n / RATE_PER_S - (time.monotonic() - started)
                if ahead > 0:
                    self.stopping.wait(ahead)
            self.producer.flush(30)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            self.producer.close()

    def stop(self) -> list[str]:
        self.stopping.set()
        self.join(60)
        if self.error is not None:
            raise self.error
        return self.command_ids


class NoRoutes(Router):
    """The bookkeeping tests never route."""


def worker_consumer(tmp_path: Path):  # -> faust Consumer
    """The consumer of the worker's Faust app, as ``create_faust_app`` builds it (not
    started: the offset bookkeeping needs no broker)."""
    settings = Settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path, worker_web_port=0)
    return create_faust_app(settings, router=NoRoutes()).consumer


def test_duplicate_acks_do_not_hold_the_commit_back(tmp_path):
    """The probe's acked list: every offset twice. Faust committed one offset per interval."""
    consumer = worker_consumer(tmp_path)
    tp = TP("commands", 0)
    consumer._committed_offset[tp] = 12489
    consumer._acked[tp] = sorted([*range(12489, 13000), *range(12490, 13000)])
    assert consumer._new_offset(tp) == 13000
    assert consumer._acked[tp] == []


def test_a_hole_over_acked_offsets_does_not_hold_the_commit_back(tmp_path):
    """After the seek race: 171..200 delivered and acked, and a hole 172..185 recorded over
    them (``_add_gap``'s interval ends after the record that revealed it)."""
    consumer = worker_consumer(tmp_path)
    tp = TP("commands", 0)
    consumer._committed_offset[tp] = 171
    consumer._acked[tp] = list(range(171, 201))
    consumer._acked_index[tp] = set(range(171, 201))
    consumer._gap[tp].addi(172, 186)
    assert consumer._new_offset(tp) == 201


def test_a_real_hole_is_still_skipped_and_unacked_offsets_are_not(tmp_path):
    consumer = worker_consumer(tmp_path)
    tp = TP("commands", 0)
    consumer._committed_offset[tp] = 10
    consumer._acked[tp] = [10, 11, 14, 15, 17]  # 12, 13 are a hole (e.g. markers), 16 unacked
    consumer._gap[tp].addi(12, 14)
    assert consumer._new_offset(tp) == 16


@pytest.mark.kafka
@pytest.mark.slow
def test_committed_offsets_reach_the_end_after_restarts_under_load(settings, running_worker):
    worker = running_worker(settings)
    log = EventLog(settings)
    load = SteadyLoad(settings)
    load.start()
    try:
        for _ in range(2):
            seen = len(load.command_ids)
            wait_for(
                lambda n=seen: len(load.command_ids) > n + 3 * RATE_PER_S,
                timeout=60,
                message="three seconds more of load",
            )
            worker.restart()
        seen = len(load.command_ids)
        wait_for(
            lambda: len(load.command_ids) > seen + 5 * RATE_PER_S,
            timeout=60,
            message="five seconds of load after the last restart",
        )
        ids = set(load.stop())

        def answered() -> bool:
            log.poll()
            return {e.command_id for e in log.events} >= ids

        wait_for(answered, timeout=120, interval=0.2, message="an outcome for every command")
        lag: dict = {}

        def caught_up() -> bool:
            lag.clear()
            lag.update(lagging_partitions(settings))
            return not lag

        try:
            wait_for(
                caught_up,
                timeout=3 * COMMIT_INTERVAL_S,
                interval=0.2,
                message="committed offsets at the end of every commands partition",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; (committed, end) by partition: {lag}") from None
        # A clean restart commits what the worker processed, so nothing was processed twice:
        # a command replayed after a restart would have published its events again.
        event_ids = [e.event_id for e in log.events]
        assert len(event_ids) == len(set(event_ids)), (
            f"{len(event_ids) - len(set(event_ids))} events published twice (commands replayed)"
        )
    finally:
        if load.is_alive():
            load.stopping.set()
            load.join(60)
        log.close()
