"""A compressed week through the real worker and API (issue 16, the short version of
``tests/benchmarks/year.py``): the live snapshot holds the open emergencies and those closed
within the archive window, not the week's history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from dispatchwire.settings import Settings
from tests.api.helpers import AUTHORITY, RunningApi
from tests.benchmarks.year import CompressedTime, create_topics, produce, wait_for_events
from tests.conftest import WorkerProcess

DAYS = 7
PER_DAY = 24
HOUR = 3_600.0


def test_a_week_of_traffic_leaves_a_bounded_snapshot(
    make_settings: Callable[..., Settings],
    running_worker: Callable[[Settings], WorkerProcess],
    running_api: Callable[..., RunningApi],
) -> None:
    # the sweeps come from the traffic, in simulated time; the worker's timers stay quiet
    settings = make_settings(archive_sweep_s=1e6, tick_seconds=1e6)
    create_topics(settings)
    worker = running_worker(settings)
    end = datetime.now(UTC).replace(microsecond=0)
    week = CompressedTime(end - timedelta(days=DAYS), per_day=PER_DAY, sweep_every_s=HOUR)
    produce(settings, week.fleet())
    produce(settings, week.until(end))
    sentinels = week.sentinels(end)
    produce(settings, iter([(at, region, value) for at, region, value, _ in sentinels]))
    wait_for_events(settings, {c for *_, c in sentinels}, timeout=120)
    assert week.counts["emergencies"] == DAYS * PER_DAY

    api = running_api(settings)
    state = api.get("/api/state", headers=AUTHORITY).json()
    live = state["emergencies"]
    # what may be live: open, or closed less than the window (+ one sweep interval) ago
    oldest = end - timedelta(seconds=week.archive_after_s + week.sweep_every_s)
    for e in live:
        assert e["closed_at"] is None or datetime.fromisoformat(e["closed_at"]) > oldest, e
    assert len(live) <= 6, [e["id"] for e in live]
    assert len(api.services.model.projection.archived) >= DAYS * PER_DAY - len(live)
    assert {e["id"] for e in worker.state()["emergencies"]} == {e["id"] for e in live}
    assert len(state["units"]) == len(week.units)
