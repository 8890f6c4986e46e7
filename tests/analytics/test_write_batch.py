"""The set-based write path against the per-event reference (pydantic decode, event_row,
Projection): same rows, same current state, whatever the batch boundaries, redeliveries,
out-of-order versions and records that are not events. No broker needed."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from analytics.tables import (
    DEDUPE_WINDOW,
    EVENTS_SCHEMA,
    create_tables,
    event_row,
    load_offsets,
    write_batch,
)
from schemas import (
    SchemaError,
    UnitLocation,
    decode_event,
    encode,
    event_id_for,
)
from schemas.projection import Projection
from tests.analytics.story import busy_log

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STAMP = 1_760_000_000_000


@dataclass
class Rec:
    partition: int
    offset: int
    timestamp: int
    value: bytes | None


def records_of(values: list[bytes | None], partition: int = 0) -> list[Rec]:
    return [Rec(partition, i, STAMP + i, v) for i, v in enumerate(values)]


def write_all(con: duckdb.DuckDBPyConnection, records: list[Rec], batch: int) -> int:
    stored = 0
    for i in range(0, len(records), batch):
        stored += write_batch(con, "t", records[i : i + batch]).events
    return stored


def reference(values: list[bytes | None]) -> tuple[Projection, dict[str, dict]]:
    """What the per-event sink stored: the fold, and the first row of each event_id."""
    fold, rows = Projection(), {}
    for i, value in enumerate(values):
        try:
            event = decode_event(value)  # type: ignore[arg-type]
        except (SchemaError, UnicodeDecodeError, TypeError):
            continue
        fold.apply(event)
        rows.setdefault(event.event_id, event_row(event, 0, i, STAMP + i, value))
    return fold, rows


def assert_matches(con: duckdb.DuckDBPyConnection, values: list[bytes | None]) -> None:
    fold, rows = reference(values)
    units = {r[0]: json.loads(r[1]) for r in con.execute("SELECT id, doc FROM units").fetchall()}
    assert units == {u["id"]: u for u in fold.as_json()["units"]}
    emergencies = {
        r[0]: json.loads(r[1]) for r in con.execute("SELECT id, doc FROM emergencies").fetchall()
    }
    assert emergencies == {e["id"]: e for e in fold.as_json()["emergencies"]}
    # The typed state columns agree with the docs.
    for uid, status, lat, version in con.execute(
        "SELECT id, status, lat, version FROM units"
    ).fetchall():
        assert (status, lat, version) == (
            units[uid]["status"],
            units[uid]["lat"],
            units[uid]["version"],
        )
    names = EVENTS_SCHEMA.names
    stored = {
        r[0]: dict(zip(names, r, strict=True))
        for r in con.execute("SELECT * FROM events").fetchall()
    }
    assert stored == rows


def story_values(duplicate_every: int = 0) -> list[bytes | None]:
    story = busy_log(n_units=6, moves=60, t0=T0, regions=("r1", "r2"))
    for k, eid in enumerate(("e0", "e50")):
        story.assign(eid, f"u{k}", T0 + timedelta(seconds=5))
        story.on_scene(eid, T0 + timedelta(seconds=9))
        story.move(f"u{k}", T0 + timedelta(seconds=10), 60.2, 24.95)  # moved while on scene
    story.complete("e0", T0 + timedelta(seconds=20))
    story.cancel("e50", T0 + timedelta(seconds=21))
    values: list[bytes | None] = []
    for i, event in enumerate(story.events):
        values.append(encode(event))
        if duplicate_every and i % duplicate_every == 0:
            values.append(encode(event))
    return values


@pytest.mark.parametrize("batch", [2, 7, 100, 10_000])
def test_rows_and_state_match_the_per_event_fold_for_any_batch_size(batch: int) -> None:
    values = story_values(duplicate_every=5)
    con = duckdb.connect()
    create_tables(con)
    stored = write_all(con, records_of(values), batch)
    assert stored == len({json.loads(v)["event_id"] for v in values if v})
    assert_matches(con, values)
    assert load_offsets(con, "t") == {0: len(values)}


def test_out_of_order_versions_and_moves_of_unknown_units_fold_like_projection() -> None:
    values = story_values()
    rng = random.Random(7)
    shuffled = values[:]
    rng.shuffle(shuffled)  # versions arrive out of order, moves before their unit exists
    ghost = UnitLocation(
        event_id=event_id_for("ghost", 0),
        command_id="ghost",
        region="r1",
        occurred_at=T0,
        unit_id="nobody",
        lat=60.0,
        lon=24.0,
        version=3,
    )
    shuffled.insert(3, encode(ghost))
    for batch in (3, 10_000):
        con = duckdb.connect()
        create_tables(con)
        write_all(con, records_of(shuffled), batch)
        assert_matches(con, shuffled)
        assert con.execute("SELECT count(*) FROM units WHERE id = 'nobody'").fetchall() == [(0,)]


def test_a_redelivery_in_a_later_batch_or_after_a_restart_is_stored_once(tmp_path: Path) -> None:
    values = story_values()
    path = tmp_path / "sink.duckdb"
    con = duckdb.connect(str(path))
    create_tables(con)
    write_all(con, records_of(values[:200]), 50)
    con.close()
    con = duckdb.connect(str(path))  # as after a restart
    create_tables(con)
    again = values[150:]  # 50 already stored, redelivered
    write_all(con, [Rec(0, 200 + i, STAMP + 200 + i, v) for i, v in enumerate(again)], 64)
    total = values[:200] + again
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall() == [
        (len(values), len(values))
    ]
    fold, _ = reference(total)
    units = {r[0]: json.loads(r[1]) for r in con.execute("SELECT id, doc FROM units").fetchall()}
    assert units == {u["id"]: u for u in fold.as_json()["units"]}


def reopened(path: Path, values: list[bytes | None], *older_sink: str) -> duckdb.DuckDBPyConnection:
    """A sink file holding the first 100 of ``values``, made by the ``older_sink`` statements
    into what an older sink left behind, opened again (``create_tables`` upgrades it)."""
    con = duckdb.connect(str(path))
    create_tables(con)
    write_all(con, records_of(values[:100]), 100)
    for statement in older_sink:
        con.execute(statement)
    con.close()
    con = duckdb.connect(str(path))
    create_tables(con)
    return con


def test_a_file_from_before_the_keys_table_gets_its_keys_and_still_dedupes(tmp_path: Path) -> None:
    values = story_values()
    # what an older sink left behind: no keys
    con = reopened(tmp_path / "old.duckdb", values, "DELETE FROM sink_event_keys")
    assert con.execute("SELECT count(*) FROM sink_event_keys").fetchall() == [(100,)]
    assert write_batch(con, "t", records_of(values[:100])).events == 0


def test_keys_made_by_another_function_are_derived_again_and_still_dedupe(tmp_path: Path) -> None:
    values = story_values()
    # what a sink keyed by md5 (or another DuckDB version's hash) left behind
    con = reopened(
        tmp_path / "md5.duckdb",
        values,
        'UPDATE sink_event_keys SET "key" = xor("key", 12345)',
        "UPDATE sink_meta SET value = 'md5_number_lower' WHERE name = 'event_key'",
    )
    assert write_batch(con, "t", records_of(values[:100])).events == 0
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(100,)]


def test_a_copy_is_dropped_within_the_dedupe_window_and_stored_again_after_it() -> None:
    """Redeliveries come within minutes; a batch is checked against the keys logged in the
    DEDUPE_WINDOW before it only (so the check does not grow with history)."""
    values = story_values()[:20]
    con = duckdb.connect(":memory:")
    create_tables(con)
    assert write_batch(con, "t", records_of(values)).events == 20
    window_ms = int(DEDUPE_WINDOW.total_seconds() * 1000)
    inside = [Rec(0, 100 + i, STAMP + window_ms - 60_000, v) for i, v in enumerate(values[:5])]
    assert write_batch(con, "t", inside).events == 0
    # a copy logged after the window: no longer checked, so stored again
    later = [Rec(0, 200 + i, STAMP + 20 + window_ms + 1, v) for i, v in enumerate(values[5:8])]
    assert write_batch(con, "t", later).events == 3
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(23,)]


def test_keys_without_their_times_are_derived_again_and_still_dedupe(tmp_path: Path) -> None:
    values = story_values()
    # what a sink from before the window left behind: keys only, stamped without "+logged_at"
    con = reopened(
        tmp_path / "untimed.duckdb",
        values,
        "ALTER TABLE sink_event_keys DROP COLUMN logged_at",
        "UPDATE sink_meta SET value = 'hash@duckdb-1.0.0' WHERE name = 'event_key'",
    )
    assert con.execute(
        "SELECT count(*) FROM sink_event_keys WHERE logged_at IS NOT NULL"
    ).fetchall() == [(100,)]
    assert write_batch(con, "t", records_of(values[:100])).events == 0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (None, "empty record"),
        (b"[1, 2]", "event: missing"),
        (b'{"event": "unit_teleported"}', "event: missing or not one of"),
        (b'{"event": "unit_location", "command_id": "c", "region": "r"}', "event_id: missing"),
        (
            b'{"event": "unit_location", "event_id": "x:0", "command_id": "c", "region": "r", '
            b'"unit_id": "u1", "lat": 60.1, "lon": 24.9}',
            "version: missing",
        ),
        (
            b'{"event": "unit_location", "event_id": "x:0", "command_id": "c", "region": "r", '
            b'"unit_id": "u1", "lat": "north", "lon": 24.9, "version": 2}',
            "lat, lon",
        ),
        (
            b'{"event": "emergency_created", "event_id": "x:0", "command_id": "c", "region": "r", '
            b'"occurred_at": "yesterday", "emergency": {"id": "e"}}',
            "occurred_at: not an ISO",
        ),
        (
            b'{"event": "emergency_updated", "event_id": "x:0", "command_id": "c", "region": "r", '
            b'"action": "teleported", "emergency": {"id": "e"}}',
            "action: missing or not one of",
        ),
    ],
)
def test_records_that_are_not_events_are_kept_as_rejects_naming_the_field(
    value: bytes | None, reason: str
) -> None:
    good = story_values()[:5]
    values = [*good[:2], value, *good[2:]]
    con = duckdb.connect()
    create_tables(con)
    result = write_batch(con, "t", records_of(values))
    assert (result.records, result.events, result.rejects) == (6, 5, 1)
    rejects = con.execute('SELECT "offset", error, raw FROM sink_rejects').fetchall()
    assert len(rejects) == 1
    offset, error, raw = rejects[0]
    assert offset == 2 and reason in error and raw == value
    assert load_offsets(con, "t") == {0: 6}  # the position moves past it
    assert_matches(con, values)


def test_times_with_an_offset_are_stored_in_utc() -> None:
    event = json.loads(story_values()[0])
    event["occurred_at"] = "2026-03-02T11:00:00+02:00"
    con = duckdb.connect()
    create_tables(con)
    write_batch(con, "t", records_of([json.dumps(event).encode()]))
    assert con.execute("SELECT occurred_at FROM events").fetchall() == [
        (datetime(2026, 3, 2, 9, 0),)
    ]


def test_record_text_and_entity_docs_are_stored_zstd_compressed(tmp_path: Path) -> None:
    """The JSON text columns are most of the file and of the checkpoint's work: zstd keeps
    them at about a third of DuckDB's default string compression, for less CPU (issue 16)."""
    con = duckdb.connect(str(tmp_path / "sink.duckdb"))
    create_tables(con)
    write_all(con, records_of(story_values()), 10_000)
    con.execute("CHECKPOINT")
    for table, column in (("events", "raw"), ("emergencies", "doc"), ("units", "doc")):
        used = {
            c
            for (c,) in con.execute(
                f"SELECT DISTINCT compression FROM pragma_storage_info('{table}') "
                "WHERE column_name = ? AND segment_type = 'VARCHAR'",
                [column],
            ).fetchall()
        }
        assert used == {"ZSTD"}, (table, column, used)


def test_writing_batches_does_not_import_pandas() -> None:
    """pyarrow's ``pa.array`` imports pandas on first use; in the sink that was 0.3-1 s of
    GIL time inside its first batch (the fetch loop stalled with it) and ~60 MB for
    nothing (issue 16). Checked in a fresh interpreter, with moves, rejects and nulls."""
    code = (
        "import sys, duckdb\n"
        "from analytics.tables import create_tables, write_batch\n"
        "from tests.analytics.test_write_batch import records_of, story_values\n"
        "assert 'pandas' not in sys.modules, 'imported before any batch'\n"
        "con = duckdb.connect()\n"
        "create_tables(con)\n"
        "values = [*story_values(duplicate_every=4), None, b'{not json', b'\\xff']\n"
        "result = write_batch(con, 't', records_of(values))\n"
        "assert result.rejects == 3, result\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == "False"
