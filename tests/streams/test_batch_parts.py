"""Issue 16, part 2: a report's event does not wait for the rest of its batch.

The fleet bench's hops put the p99 of a report in the worker: under the fleet's 1,000 GPS
fixes a second the agent takes batches of up to 500 commands, and every event of a batch
left only after the whole batch was decided and its table writes acknowledged, so a report
at the front of a batch waited for the hundreds of fixes behind it. Now a batch is decided
in parts (``streams.processing``: ``FLUSH_AFTER_S``, ``FLUSH_MAX``) and each part's events
leave once its own writes (and those before them) are acknowledged, while the rest is
decided.

Here a backlog of 20 registrations, one report and 470 fixes waits before the worker
starts, so it comes in one batch. The report's ``emergency_created`` must be in the log
before the batch's last fix wrote its table entry (the producer stamps both records as it
queues them); before the change it came after every write of the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dispatchwire.settings import Settings
from schemas import UnitPosition
from schemas.events import EmergencyCreated, UnitLocation
from tests.conftest import WorkerProcess
from tests.streams.conftest import fresh_settings
from tests.streams.helpers import Commands, EventLog, changelog_topic, read_to_end
from tests.streams.world import STATION, medical_report, unit_u1

pytestmark = pytest.mark.kafka

UNITS = 20
FIXES = 470


@pytest.fixture
def backlog_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return fresh_settings(kafka_bootstrap, tmp_path, partitions=1, tick_seconds=60.0)


@pytest.fixture
def late_worker(backlog_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(backlog_settings, tmp_path / "worker.log")
    try:
        yield worker
    finally:
        worker.kill()


def test_a_report_at_the_front_of_a_batch_leaves_before_the_batch_is_decided(
    backlog_settings, late_worker
):
    units = [
        unit_u1(unit_id=f"p{n}", callsign=f"P{n}", command_id=f"reg-p{n}") for n in range(UNITS)
    ]
    report = medical_report(command_id="front-report")
    start = datetime.now(UTC) + timedelta(minutes=5)  # after the registrations' own times
    fixes = [
        UnitPosition(
            command_id=f"gps-p{n}",
            region="r",
            unit_id=f"p{n % UNITS}",
            lat=round(STATION[0] + (n + 1) * 1e-6, 7),
            lon=STATION[1],
            issued_by="simulator",
            issued_at=start + timedelta(milliseconds=n),
        )
        for n in range(FIXES)
    ]
    commands = Commands(backlog_settings)
    try:
        commands.send_all([*units, report, *fixes])
    finally:
        commands.close()
    worker = late_worker.start()
    events = EventLog(backlog_settings)
    try:
        events.wait(
            lambda e: isinstance(e, UnitLocation) and e.command_id == fixes[-1].command_id,
            timeout=120.0,
            message="the last fix's unit_location",
        )
        created = [
            (record, event)
            for record, event in zip(events.records, events.events, strict=True)
            if isinstance(event, EmergencyCreated)
        ]
    finally:
        events.close()
    counts = httpx.get(f"{worker.url}/dispatch/batches/", timeout=10).json()
    # the premise: the whole backlog came in one batch (a backlog of 1,000 takes 2 to a few)
    assert counts["largest"] >= UNITS + 1 + FIXES, counts
    assert len(created) == 1 and created[0][1].command_id == report.command_id
    report_at = created[0][0].timestamp
    last = (FIXES - 1) % UNITS  # the unit of the batch's last fix
    writes = [
        r.timestamp
        for r in read_to_end(backlog_settings, changelog_topic(backlog_settings))
        if r.key == f'"u:p{last}"'.encode()
    ]
    # the registration's write, then one per fix of that unit; the last is the batch's last
    assert len(writes) == 1 + sum(1 for n in range(FIXES) if n % UNITS == last), writes
    assert report_at < writes[-1], (report_at, writes[-1], counts)
