"""The ready queries on a known event log, against numbers worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics.queries import run_query
from dispatchwire.settings import Settings
from tests.analytics.conftest import run_cli, stored_snapshot
from tests.analytics.story import Story

pytestmark = pytest.mark.kafka

DAY = datetime(2026, 3, 2, tzinfo=UTC)


def at(hh: int, mm: int) -> datetime:
    return DAY + timedelta(hours=hh, minutes=mm)


def known_story() -> Story:
    s = Story()
    s.unit("u1", "ambulance", "r1", at(9, 0), 60.17, 24.94)
    s.unit("u2", "fire_engine", "r1", at(9, 0), 60.18, 24.95)
    s.unit("u3", "police_car", "r2", at(9, 0), 60.20, 24.96)
    s.report("e1", "medical", "r1", at(10, 0), 60.1725, 24.9425, priority=1)
    s.assign("e1", "u1", at(10, 1))
    s.move("u1", at(10, 3), 60.171, 24.941)
    s.on_scene("e1", at(10, 6))
    s.report("e3", "fire", "r1", at(10, 10), 60.1825, 24.9525, priority=1)
    s.assign("e3", "u2", at(10, 12))
    s.on_scene("e3", at(10, 20))
    s.complete("e1", at(10, 20))
    s.report("e2", "medical", "r1", at(10, 30), 60.1735, 24.9435, priority=2)
    s.assign("e2", "u1", at(10, 33))
    s.on_scene("e2", at(10, 40))
    s.complete("e2", at(11, 0))
    s.report("e4", "police", "r2", at(11, 5), 60.2025, 24.9625, priority=3)
    s.report("e5", "police", "r2", at(11, 10), 60.2035, 24.9635, priority=3)
    s.cancel("e5", at(11, 15))
    return s


@pytest.fixture(scope="module")
def snapshot_db(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("queries")
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"tq{base.name}.",
        app_id=f"dw-q-{base.name}",
        sink_db=base / "sink.duckdb",
        data_dir=base,
        partitions=2,
    )
    return stored_snapshot(settings, known_story().events, base / "snap.duckdb", duplicate_every=4)


def test_response_times_by_type_region_and_hour(snapshot_db: Path) -> None:
    rows = run_query(snapshot_db, "response-times").as_dicts()
    by_key = {(r["type"], r["region"], r["hour"]): r for r in rows}
    assert set(by_key) == {("medical", "r1", 10), ("fire", "r1", 10), ("police", "r2", 11)}
    medical = by_key["medical", "r1", 10]
    # e1: assign 60 s, travel 300 s, on scene 840 s, total 1200 s
    # e2: assign 180 s, travel 420 s, on scene 1200 s, total 1800 s
    assert (medical["incidents"], medical["completed"]) == (2, 2)
    assert (medical["assign_p50_s"], medical["assign_p90_s"]) == (120.0, 168.0)
    assert (medical["travel_p50_s"], medical["travel_p90_s"]) == (360.0, 408.0)
    assert (medical["on_scene_p50_s"], medical["on_scene_p90_s"]) == (1020.0, 1164.0)
    assert (medical["total_p50_s"], medical["total_p90_s"]) == (1500.0, 1740.0)
    fire = by_key["fire", "r1", 10]  # e3: assigned after 120 s, on scene 480 s later, open
    assert (fire["assign_p50_s"], fire["travel_p50_s"], fire["total_p50_s"]) == (120.0, 480.0, None)
    police = by_key["police", "r2", 11]  # never assigned
    assert (police["incidents"], police["completed"], police["assign_p50_s"]) == (2, 0, None)


def test_unit_utilisation(snapshot_db: Path) -> None:
    rows = {r["unit_id"]: r for r in run_query(snapshot_db, "utilisation").as_dicts()}
    # Observed 09:00 -> 11:15 (the last event) = 8100 s.
    # u1 busy 10:01-10:20 and 10:33-11:00 = 1140 + 1620 = 2760 s.
    # u2 busy 10:12 -> end = 3780 s. u3 never busy.
    assert (rows["u1"]["busy_s"], rows["u1"]["observed_s"], rows["u1"]["dispatches"]) == (
        2760.0,
        8100.0,
        2,
    )
    assert rows["u1"]["utilisation"] == round(2760 / 8100, 4)
    assert (rows["u2"]["busy_s"], rows["u2"]["utilisation"], rows["u2"]["dispatches"]) == (
        3780.0,
        round(3780 / 8100, 4),
        1,
    )
    assert (rows["u3"]["busy_s"], rows["u3"]["utilisation"], rows["u3"]["dispatches"]) == (
        0.0,
        0.0,
        0,
    )
    assert rows["u2"]["current_status"] == "ON_SCENE"


def test_open_incidents(snapshot_db: Path) -> None:
    rows = run_query(snapshot_db, "open-incidents").as_dicts()
    assert [(r["id"], r["status"], r["age_s"]) for r in rows] == [
        ("e3", "ON_SCENE", 3900.0),  # reported 10:10, log ends 11:15
        ("e4", "PENDING", 600.0),
    ]


def test_busiest_areas(snapshot_db: Path) -> None:
    rows = run_query(snapshot_db, "busiest-areas").as_dicts()
    assert [
        (r["region"], r["cell_lat"], r["cell_lon"], r["incidents"], r["open_incidents"], r["types"])
        for r in rows
    ] == [
        ("r1", 60.17, 24.94, 2, 0, "medical"),
        ("r2", 60.2, 24.96, 2, 1, "police"),
        ("r1", 60.18, 24.95, 1, 1, "fire"),
    ]


def test_query_cli_prints_csv(snapshot_db: Path, make_settings) -> None:
    out = run_cli(
        make_settings(), "query", "open-incidents", "--db", str(snapshot_db), "--format", "csv"
    ).stdout
    assert out.splitlines()[0].startswith("id,region,type,priority,status")
    assert [line.split(",")[0] for line in out.splitlines()[1:] if line] == ["e3", "e4"]
