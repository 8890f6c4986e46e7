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
queues them); before the change it came after every write of the batch. Each fix is made
to take a millisecond longer (``tests/streams/slow_fix_worker.py``): at their own cost the
rest of the batch was decided in about the time of one acknowledgement on a loaded machine,
and the test failed twice in many runs (the report's event 1 and 6 ms after the last write).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dispatchwire.settings import Settings
from schemas.events import EmergencyCreated
from tests.conftest import WorkerProcess
from tests.streams.conftest import run_backlog
from tests.streams.helpers import changelog_topic, read_to_end, scripted_worker
from tests.streams.world import fleet_backlog, medical_report

pytestmark = pytest.mark.kafka

UNITS = 20
FIXES = 470
SLOW_FIX_S = 0.001


@pytest.fixture
def slow_fix_worker(backlog_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    worker = scripted_worker(
        backlog_settings,
        tmp_path / "worker.log",
        "slow_fix_worker.py",
        {"SLOW_FIX_S": str(SLOW_FIX_S)},
    )
    try:
        yield worker
    finally:
        worker.kill()


def test_a_report_at_the_front_of_a_batch_leaves_before_the_batch_is_decided(
    backlog_settings, slow_fix_worker
):
    units, fixes = fleet_backlog("p", UNITS, FIXES)
    report = medical_report(command_id="front-report")
    worker, records, events = run_backlog(
        backlog_settings, slow_fix_worker, [*units, report, *fixes], fixes[-1].command_id
    )
    created = [
        (record, event)
        for record, event in zip(records, events, strict=True)
        if isinstance(event, EmergencyCreated)
    ]
    counts = httpx.get(f"{worker.url}/dispatch/batches/", timeout=10).json()
    # the premise: the whole backlog came in one batch (a backlog of 1,000 takes 2 to a few)
    assert counts["largest"] >= UNITS + 1 + FIXES, counts
    assert counts["decide_s"] >= FIXES * SLOW_FIX_S, counts  # and it took half a second
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
