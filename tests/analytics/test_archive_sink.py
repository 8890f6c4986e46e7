"""The DuckDB sink keeps an archived emergency's history (issue 16): the archive event is a
row of ``events``, the archive is recorded once in ``emergency_archives``, and the
``emergencies`` row stays as the emergency was when it closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from analytics.tables import create_tables, write_batch
from schemas import encode
from schemas.entities import Emergency, EmergencyStatus, EmergencyType
from schemas.events import EmergencyArchived, EmergencyCreated, EmergencyUpdated
from tests.analytics.test_write_batch import STAMP, Rec

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_an_archived_emergency_keeps_its_row_and_its_archive_is_recorded(tmp_path: Path) -> None:
    reported = Emergency(
        id="e-1",
        region="north",
        type=EmergencyType.FIRE,
        priority=1,
        lat=60.17,
        lon=24.94,
        reported_at=T0,
        version=1,
    )
    closed = reported.model_copy(
        update={"status": EmergencyStatus.CANCELLED, "closed_at": T0, "version": 2}
    )
    archived = EmergencyArchived(
        event_id="sweep-1:0",
        command_id="sweep-1",
        region="north",
        emergency_id="e-1",
        status=EmergencyStatus.CANCELLED,
        closed_at=T0,
        occurred_at=T0 + timedelta(hours=1),
    )
    values = [
        encode(
            EmergencyCreated(event_id="c-1:0", command_id="c-1", region="north", emergency=reported)
        ),
        encode(
            EmergencyUpdated(
                event_id="c-2:0",
                command_id="c-2",
                region="north",
                action="cancelled",
                emergency=closed,
            )
        ),
        encode(archived),
    ]
    con = duckdb.connect(str(tmp_path / "sink.duckdb"))
    create_tables(con)
    records = [Rec(0, i, STAMP + i, v) for i, v in enumerate(values)]
    assert write_batch(con, "t", records[:2]).events == 2
    result = write_batch(con, "t", records[2:])
    assert (result.events, result.rejects) == (1, 0)
    # a redelivery of the archive is stored once
    assert write_batch(con, "t", [Rec(0, 3, STAMP + 3, values[2])]).events == 0

    assert con.execute("SELECT id, status, version FROM emergencies").fetchall() == [
        ("e-1", "CANCELLED", 2)
    ]
    assert con.execute(
        "SELECT id, region, status, closed_at, archived_at, event_id FROM emergency_archives"
    ).fetchall() == [
        (
            "e-1",
            "north",
            "CANCELLED",
            T0.replace(tzinfo=None),
            (T0 + timedelta(hours=1)).replace(tzinfo=None),
            "sweep-1:0",
        )
    ]
    assert con.execute(
        "SELECT event, emergency_id FROM events WHERE event_id = 'sweep-1:0'"
    ).fetchall() == [("emergency_archived", "e-1")]
    bad = b'{"v":1,"event":"emergency_archived","event_id":"x:0","command_id":"x","region":"r"}'
    assert write_batch(con, "t", [Rec(0, 4, STAMP + 4, bad)]).rejects == 1
    assert con.execute("SELECT error FROM sink_rejects").fetchall() == [("emergency_id: missing",)]
