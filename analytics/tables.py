"""The sink's DuckDB tables and how one batch of log records is written to them.

One batch is one DuckDB transaction holding the new ``events`` rows, the changed rows of
the current-state tables (``emergencies``, ``units``) and the Kafka position after the
batch (``sink_offsets``). Either all of it is on disk or none of it, so a sink killed at
any instant restarts from the position that matches its rows.

The write is set-based: the batch goes to DuckDB as one Arrow table of raw record values
(plus partition, offset, timestamp), and SQL does the rest in the same transaction: JSON
extraction (``json_transform``, one parse per record), picking out records that are not
events into ``sink_rejects``, dropping redelivered ``event_id``s, and the fold of
``schemas.projection`` over the current-state tables (window functions per entity id).
No Python object per event, no row-by-row inserts. The per-event helpers further down
(``event_row`` ...) are the reference the tests check the SQL against and the row-by-row
peer of the benchmark; the sink does not use them.

Times are stored as UTC ``TIMESTAMP``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any, Protocol, cast

import duckdb
import numpy as np
import pyarrow as pa

from dispatchwire.errors import SinkError
from schemas import (
    Emergency,
    EmergencyCreated,
    EmergencyUpdated,
    Unit,
    UnitLocation,
    UnitStatusUpdate,
    decode_event,
)
from schemas.projection import Projection

log = logging.getLogger(__name__)

DDL = """
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR NOT NULL,         -- deterministic; a redelivered event is stored once
                                       -- (write_batch checks sink_event_keys; an index on
                                       -- this column would cost more than the rest of the
                                       -- write together)
    event VARCHAR NOT NULL,            -- emergency_created, emergency_updated, ...
    action VARCHAR,                    -- emergency_updated: assigned/on_scene/completed/cancelled
    region VARCHAR NOT NULL,
    command_id VARCHAR NOT NULL,
    occurred_at TIMESTAMP NOT NULL,    -- UTC, when the worker decided it
    logged_at TIMESTAMP NOT NULL,      -- UTC, the Kafka record timestamp
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    emergency_id VARCHAR,
    unit_id VARCHAR,
    emergency_status VARCHAR,          -- the emergency's status after the event
    unit_status VARCHAR,               -- the unit's status after the event
    lat DOUBLE,                        -- where: the unit for unit events, else the emergency
    lon DOUBLE,
    raw VARCHAR NOT NULL USING COMPRESSION zstd  -- the record value exactly as in the log
);
CREATE TABLE IF NOT EXISTS emergencies (
    id VARCHAR, region VARCHAR, type VARCHAR, priority INTEGER, lat DOUBLE, lon DOUBLE,
    description VARCHAR, status VARCHAR, assigned_unit_id VARCHAR, reported_at TIMESTAMP,
    assigned_at TIMESTAMP, on_scene_at TIMESTAMP, closed_at TIMESTAMP, version INTEGER,
    doc VARCHAR USING COMPRESSION zstd  -- the entity as JSON, to rebuild the fold on start
);
CREATE TABLE IF NOT EXISTS units (
    id VARCHAR, callsign VARCHAR, type VARCHAR, region VARCHAR, status VARCHAR, lat DOUBLE,
    lon DOUBLE, station VARCHAR, emergency_id VARCHAR, eta_s DOUBLE, heading DOUBLE,
    updated_at TIMESTAMP, version INTEGER, doc VARCHAR USING COMPRESSION zstd
);
CREATE TABLE IF NOT EXISTS sink_offsets (
    topic VARCHAR, "partition" INTEGER, next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, "partition")
);
CREATE TABLE IF NOT EXISTS sink_event_keys (  -- EVENT_KEY of every events row: scanning
    "key" UBIGINT NOT NULL,                     -- 8 bytes a row finds redeliveries; only
    logged_at TIMESTAMP                         -- the last DEDUPE_WINDOW are scanned
);
ALTER TABLE sink_event_keys ADD COLUMN IF NOT EXISTS logged_at TIMESTAMP;
CREATE TABLE IF NOT EXISTS sink_meta (name VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS sink_rejects (   -- records that are not events; kept, not retried
    "partition" INTEGER, "offset" BIGINT, error VARCHAR, raw BLOB
);
"""

# The 8-byte key of an event_id in sink_event_keys. DuckDB's hash() is some 25x cheaper
# than md5_number_lower() but only stable within one DuckDB version, so the file records
# which function (and version) made its keys and create_tables re-derives them on a change.
EVENT_KEY = "hash(event_id)"
EVENT_KEY_FN = f"hash@duckdb-{duckdb.__version__}+logged_at"

# A redelivered event (a worker replaying what a crash cut off, a producer retry) reaches
# the log within minutes of its first copy, so a batch is checked against the keys of the
# events logged from DEDUPE_WINDOW before its first record on, not against all history.
# The keys are appended in log order, so DuckDB's row-group min/max (zonemaps) skip the
# older ones: the check costs the same after a year as after a day (a 5,000-event batch
# against 20M stored keys: ~300 ms scanning all, ~10 ms the last day). A copy arriving
# later than the window is stored again (README, "Data").
DEDUPE_WINDOW = timedelta(hours=24)

TS = pa.timestamp("us")
EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event", pa.string()),
        ("action", pa.string()),
        ("region", pa.string()),
        ("command_id", pa.string()),
        ("occurred_at", TS),
        ("logged_at", TS),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("emergency_id", pa.string()),
        ("unit_id", pa.string()),
        ("emergency_status", pa.string()),
        ("unit_status", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("raw", pa.string()),
    ]
)


class LogRecord(Protocol):
    """What the sink needs of a Kafka record (kafka-python's ConsumerRecord fits)."""

    partition: int
    offset: int
    timestamp: int
    value: bytes


def utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        return dt
    return dt.astimezone(UTC).replace(tzinfo=None)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables if missing; sets the session time zone to UTC, which
    ``write_batch`` relies on to read times without an offset as UTC."""
    con.execute("SET TimeZone = 'UTC'")
    # Fewer, larger checkpoints: each one recompresses what was appended since the last.
    con.execute("SET checkpoint_threshold = '256MB'")
    con.execute(DDL)
    con.execute(_ARCHIVES_VIEW)
    keys, events, key_fn = con.execute(
        "SELECT (SELECT count(*) FROM sink_event_keys), (SELECT count(*) FROM events), "
        "(SELECT value FROM sink_meta WHERE name = 'event_key')"
    ).fetchall()[0]
    # A file from before sink_event_keys, or keys made by another function (md5 before, or
    # another DuckDB's hash), or without their times: derive them once, in log time order,
    # in one transaction with the stamp.
    if keys != events or key_fn != EVENT_KEY_FN:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM sink_event_keys")
        con.execute(
            f"INSERT INTO sink_event_keys SELECT {EVENT_KEY}, logged_at FROM events"  # noqa: S608
            " ORDER BY logged_at"
        )
        con.execute("INSERT OR REPLACE INTO sink_meta VALUES ('event_key', ?)", [EVENT_KEY_FN])
        con.execute("COMMIT")


def event_row(
    event: Any, partition: int, offset: int, timestamp_ms: int, raw: bytes
) -> dict[str, Any]:
    emergency: Emergency | None = getattr(event, "emergency", None)
    unit: Unit | None = getattr(event, "unit", None)
    unit_id = getattr(event, "unit_id", None) or (unit.id if unit else None)
    if unit_id is None and emergency is not None:
        unit_id = emergency.assigned_unit_id
    if isinstance(event, UnitLocation):
        where: tuple[float | None, float | None] = (event.lat, event.lon)
    elif isinstance(event, UnitStatusUpdate):
        where = (event.unit.lat, event.unit.lon)
    elif emergency is not None:
        where = (emergency.lat, emergency.lon)
    else:
        where = (None, None)
    return {
        "event_id": event.event_id,
        "event": event.event,
        "action": getattr(event, "action", None),
        "region": event.region,
        "command_id": event.command_id,
        "occurred_at": utc(event.occurred_at),
        "logged_at": datetime.fromtimestamp(timestamp_ms / 1000, UTC).replace(tzinfo=None),
        "partition": partition,
        "offset": offset,
        "emergency_id": emergency.id if emergency else getattr(event, "emergency_id", None),
        "unit_id": unit_id,
        "emergency_status": emergency.status.value if emergency else None,
        "unit_status": unit.status.value if unit else None,
        "lat": where[0],
        "lon": where[1],
        "raw": raw.decode(),
    }


def emergency_row(e: Emergency) -> dict[str, Any]:
    return {
        "id": e.id,
        "region": e.region,
        "type": e.type.value,
        "priority": e.priority,
        "lat": e.lat,
        "lon": e.lon,
        "description": e.description,
        "status": e.status.value,
        "assigned_unit_id": e.assigned_unit_id,
        "reported_at": utc(e.reported_at),
        "assigned_at": utc(e.assigned_at),
        "on_scene_at": utc(e.on_scene_at),
        "closed_at": utc(e.closed_at),
        "version": e.version,
        "doc": e.model_dump_json(),
    }


def unit_row(u: Unit) -> dict[str, Any]:
    return {
        "id": u.id,
        "callsign": u.callsign,
        "type": u.type.value,
        "region": u.region,
        "status": u.status.value,
        "lat": u.lat,
        "lon": u.lon,
        "station": u.station,
        "emergency_id": u.emergency_id,
        "eta_s": u.eta_s,
        "heading": u.heading,
        "updated_at": utc(u.updated_at),
        "version": u.version,
        "doc": u.model_dump_json(),
    }


def load_offsets(con: duckdb.DuckDBPyConnection, topic: str) -> dict[int, int]:
    rows = con.execute(
        'SELECT "partition", next_offset FROM sink_offsets WHERE topic = ?', [topic]
    ).fetchall()
    return {int(p): int(o) for p, o in rows}


@dataclass
class BatchResult:
    records: int = 0
    events: int = 0
    rejects: int = 0


def _changed_ids(event: Any) -> tuple[list[str], list[str]]:
    if isinstance(event, EmergencyCreated):
        return [event.emergency.id], []
    if isinstance(event, EmergencyUpdated):
        return [event.emergency.id], [event.unit.id] if event.unit else []
    if isinstance(event, UnitStatusUpdate):
        return [], [event.unit.id]
    if isinstance(event, UnitLocation):
        return [], [event.unit_id]
    return [], []


# --- the set-based write -------------------------------------------------------------

BATCH_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("logged_at", pa.timestamp("ms")),
        ("raw_blob", pa.large_binary()),
    ]
)

# What json_transform pulls out of each record, in one parse. A field of the wrong JSON
# type comes out NULL, which the checks below turn into a reject naming the field.
_EVENT_FIELDS = json.dumps(
    {
        "v": "BIGINT",
        "event_id": "VARCHAR",
        "event": "VARCHAR",
        "action": "VARCHAR",
        "region": "VARCHAR",
        "command_id": "VARCHAR",
        "occurred_at": "VARCHAR",
        "unit_id": "VARCHAR",
        "emergency_id": "VARCHAR",
        "lat": "DOUBLE",
        "lon": "DOUBLE",
        "version": "BIGINT",
        "emergency": {
            "id": "VARCHAR",
            "status": "VARCHAR",
            "lat": "DOUBLE",
            "lon": "DOUBLE",
            "assigned_unit_id": "VARCHAR",
            "version": "BIGINT",
        },
        "unit": {
            "id": "VARCHAR",
            "status": "VARCHAR",
            "lat": "DOUBLE",
            "lon": "DOUBLE",
            "version": "BIGINT",
        },
    }
)
_EMERGENCY_FIELDS = json.dumps(
    {
        "id": "VARCHAR",
        "region": "VARCHAR",
        "type": "VARCHAR",
        "priority": "INTEGER",
        "lat": "DOUBLE",
        "lon": "DOUBLE",
        "description": "VARCHAR",
        "status": "VARCHAR",
        "assigned_unit_id": "VARCHAR",
        "reported_at": "VARCHAR",
        "assigned_at": "VARCHAR",
        "on_scene_at": "VARCHAR",
        "closed_at": "VARCHAR",
        "version": "INTEGER",
    }
)
_UNIT_FIELDS = json.dumps(
    {
        "id": "VARCHAR",
        "callsign": "VARCHAR",
        "type": "VARCHAR",
        "region": "VARCHAR",
        "status": "VARCHAR",
        "lat": "DOUBLE",
        "lon": "DOUBLE",
        "station": "VARCHAR",
        "emergency_id": "VARCHAR",
        "eta_s": "DOUBLE",
        "heading": "DOUBLE",
        "updated_at": "VARCHAR",
        "version": "INTEGER",
    }
)


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_EVENT_NAMES = (
    "emergency_created",
    "emergency_updated",
    "unit_status_update",
    "unit_location",
    "command_rejected",
    "command_repeated",
    "emergency_archived",
)
_ACTIONS = ("assigned", "on_scene", "completed", "cancelled")


def _utc(text: str) -> str:
    """SQL for an ISO 8601 string to a UTC TIMESTAMP (offsets applied, NULL if not a time).

    A plain cast ignores an offset, so only strings in UTC ("Z", as pydantic writes them)
    take that fast path; anything else goes through TIMESTAMPTZ (several times slower).
    """
    return (
        f"CASE WHEN ends_with({text}, 'Z') THEN try_cast({text} AS TIMESTAMP) "
        f"ELSE timezone('UTC', try_cast({text} AS TIMESTAMPTZ)) END"
    )


# Cheap validation instead of a pydantic model per event: valid UTF-8 and JSON, a known
# event name, the envelope fields, and the fields the tables and the fold need per type.
# A record failing it goes to sink_rejects with the reason, as a failed decode did before.
_PARSE = f"""
CREATE TEMP TABLE sink_parsed AS
SELECT *, CASE
    WHEN no_value THEN 'empty record: no value'
    WHEN raw IS NULL THEN 'not UTF-8'
    WHEN not_json THEN 'not JSON'
    WHEN event IS NULL OR event NOT IN ({_sql_list(_EVENT_NAMES)})
        THEN 'event: missing or not one of {", ".join(_EVENT_NAMES)}'
    WHEN coalesce(v, 1) <> 1 THEN 'v: unsupported schema version'
    WHEN event_id IS NULL THEN 'event_id: missing or not a string'
    WHEN command_id IS NULL THEN 'command_id: missing or not a string'
    WHEN region IS NULL THEN 'region: missing or not a string'
    WHEN occurred_text IS NOT NULL AND occurred_ts IS NULL
        THEN 'occurred_at: not an ISO 8601 time'
    WHEN event IN ('emergency_created', 'emergency_updated') AND e_id IS NULL
        THEN 'emergency.id: missing'
    WHEN event = 'emergency_updated' AND (action IS NULL OR action NOT IN ({_sql_list(_ACTIONS)}))
        THEN 'action: missing or not one of {", ".join(_ACTIONS)}'
    WHEN event = 'unit_status_update' AND u_id IS NULL THEN 'unit.id: missing'
    WHEN event = 'emergency_archived' AND emergency_id IS NULL THEN 'emergency_id: missing'
    WHEN event = 'unit_location' AND unit_id IS NULL THEN 'unit_id: missing'
    WHEN event = 'unit_location' AND version IS NULL THEN 'version: missing or not an integer'
    WHEN event = 'unit_location' AND (lat IS NULL OR lon IS NULL)
        THEN 'lat, lon: missing or not numbers'
    END AS error
FROM (
    SELECT seq, "partition", "offset", logged_at, no_value, raw,
        j IS NULL AS not_json,
        j['v'] AS v, j['event_id'] AS event_id, j['event'] AS event, j['action'] AS action,
        j['region'] AS region, j['command_id'] AS command_id,
        j['occurred_at'] AS occurred_text, {_utc("j['occurred_at']")} AS occurred_ts,
        j['unit_id'] AS unit_id, j['emergency_id'] AS emergency_id,
        j['lat'] AS lat, j['lon'] AS lon, j['version'] AS version,
        j['emergency']['id'] AS e_id, j['emergency']['status'] AS e_status,
        j['emergency']['lat'] AS e_lat, j['emergency']['lon'] AS e_lon,
        j['emergency']['assigned_unit_id'] AS e_assigned_unit_id,
        coalesce(j['emergency']['version'], 1) AS e_version,
        j['unit']['id'] AS u_id, j['unit']['status'] AS u_status,
        j['unit']['lat'] AS u_lat, j['unit']['lon'] AS u_lon,
        coalesce(j['unit']['version'], 1) AS u_version
    FROM (SELECT *, try(json_transform(raw, '{_EVENT_FIELDS}')) AS j
          FROM (SELECT seq, "partition", "offset", logged_at, raw_blob IS NULL AS no_value,
                    try(decode(raw_blob)) AS raw
                FROM sink_batch))
)
"""  # noqa: S608 - built from constants only

# Which valid records of the batch become events rows: the first copy of each event_id in
# the batch (a narrow GROUP BY; far cheaper than a window over whole rows), unless an
# earlier batch stored it within DEDUPE_WINDOW. That check scans the 8-byte keys
# (EVENT_KEY) logged since the cutoff (the parameter), not the event_id strings; only the
# (rare) key hits are confirmed against events.event_id, over the same window.
_NEW_EVENTS = """
CREATE TEMP TABLE sink_new AS
SELECT min(seq) AS seq, event_id, hash(event_id) AS "key", min(logged_at) AS logged_at
FROM sink_parsed WHERE error IS NULL GROUP BY event_id
"""
_KEY_HITS = """
SELECT count(*) FROM sink_event_keys
WHERE logged_at >= $cutoff AND "key" IN (SELECT "key" FROM sink_new)
"""
_DROP_STORED = """
DELETE FROM sink_new WHERE event_id IN (
    SELECT event_id FROM events WHERE logged_at >= $cutoff AND event_id IN (
        SELECT event_id FROM sink_new WHERE "key" IN (
            SELECT "key" FROM sink_event_keys
            WHERE logged_at >= $cutoff AND "key" IN (SELECT "key" FROM sink_new))))
"""

# The columns of event_row, in table order.
_INSERT_EVENTS = """
INSERT INTO events
SELECT event_id, event, action, region, command_id, coalesce(occurred_ts, logged_at),
    logged_at, "partition", "offset",
    coalesce(e_id, emergency_id),
    coalesce(nullif(unit_id, ''), u_id, e_assigned_unit_id),
    e_status, u_status,
    CASE event WHEN 'unit_location' THEN lat WHEN 'unit_status_update' THEN u_lat
        ELSE e_lat END,
    CASE event WHEN 'unit_location' THEN lon WHEN 'unit_status_update' THEN u_lon
        ELSE e_lon END,
    raw
FROM sink_parsed
WHERE seq IN (SELECT seq FROM sink_new)
"""

# When each emergency left the live state (issue 16), read from its ``emergency_archived``
# row of ``events`` (stored once, like every event); its ``emergencies`` row stays as it was.
# A view: nothing more is written per batch, and it cannot disagree with the events.
_ARCHIVES_VIEW = f"""
CREATE OR REPLACE VIEW emergency_archives AS
SELECT emergency_id AS id, region, raw ->> '$.status' AS status,
    {_utc("raw ->> '$.closed_at'")} AS closed_at, occurred_at AS archived_at, event_id
FROM events WHERE event = 'emergency_archived'
"""  # noqa: S608 - built from constants only

_INSERT_REJECTS = """
INSERT INTO sink_rejects SELECT p."partition", p."offset", p.error, b.raw_blob
FROM sink_parsed p JOIN sink_batch b ON b.seq = p.seq WHERE p.error IS NOT NULL
"""

_UPSERT_OFFSETS = """
INSERT INTO sink_offsets SELECT ?, "partition", max("offset") + 1 FROM sink_batch GROUP BY ALL
ON CONFLICT (topic, "partition") DO UPDATE SET next_offset = excluded.next_offset
"""

# The fold for emergencies: each event carries the whole entity, so the new state is the
# highest version in the batch (its first occurrence), if it is above the stored one.
_EMERGENCY_DOCS = """
CREATE TEMP TABLE sink_emergency_docs AS
SELECT c.id, (p.raw -> '$.emergency')::VARCHAR AS doc
FROM (
    SELECT e_id AS id, max(e_version) AS version,
        arg_max(seq, (e_version::HUGEINT << 40) - seq) AS seq  -- first of the highest
    FROM sink_parsed
    WHERE error IS NULL AND event IN ('emergency_created', 'emergency_updated')
    GROUP BY e_id
) c
JOIN sink_parsed p ON p.seq = c.seq
LEFT JOIN emergencies s ON s.id = c.id
WHERE s.id IS NULL OR c.version > s.version
"""

# The fold for units, exactly as Projection.apply does it in log order (seq):
# a whole unit (emergency_updated.unit, unit_status_update) applies if its version is above
# every version applied before it; a unit_location likewise, but only once the unit exists
# (stored, or a whole unit earlier in the batch), and it changes only the position fields.
# Per unit, the last applied event decides: a whole unit is the new state as it is; a
# location is laid over the last applied whole unit before it (or the stored one).
_UNIT_CHANGES = """
CREATE TEMP TABLE sink_unit_changes AS
WITH c AS (
    SELECT u_id AS id, u_version AS version, seq, true AS whole FROM sink_parsed
    WHERE error IS NULL AND event IN ('emergency_updated', 'unit_status_update')
        AND u_id IS NOT NULL
    UNION ALL
    SELECT unit_id, version, seq, false FROM sink_parsed
    WHERE error IS NULL AND event = 'unit_location'
), known AS (
    SELECT c.*, s.version AS stored_version, s.id IS NOT NULL AS stored,
        min(CASE WHEN whole THEN seq END) OVER (PARTITION BY c.id) AS first_whole
    FROM c LEFT JOIN units s ON s.id = c.id
), applied AS (
    SELECT * FROM known
    WHERE whole OR stored OR first_whole < seq
    QUALIFY version > greatest(coalesce(stored_version, 0), coalesce(max(version) OVER (
        PARTITION BY id ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))
)
SELECT id, max(seq) AS last_seq, max(seq) FILTER (WHERE whole) AS whole_seq
FROM applied GROUP BY id
"""

_UNIT_DOCS = """
CREATE TEMP TABLE sink_unit_docs AS
SELECT ch.id, (p.raw -> '$.unit')::VARCHAR AS doc
FROM sink_unit_changes ch JOIN sink_parsed p ON p.seq = ch.last_seq
WHERE ch.last_seq = ch.whole_seq
"""

_UNIT_MOVES = """
SELECT ch.id, coalesce((b.raw -> '$.unit')::VARCHAR, s.doc), p.raw,
    strftime(p.logged_at, '%Y-%m-%dT%H:%M:%S.%fZ')
FROM sink_unit_changes ch
JOIN sink_parsed p ON p.seq = ch.last_seq
LEFT JOIN sink_parsed b ON b.seq = ch.whole_seq
LEFT JOIN units s ON s.id = ch.id
WHERE ch.whole_seq IS NULL OR ch.last_seq <> ch.whole_seq
"""

_PUT_EMERGENCIES = f"""
INSERT INTO emergencies
SELECT e['id'], e['region'], e['type'], e['priority'], e['lat'], e['lon'],
    coalesce(e['description'], ''), coalesce(e['status'], 'PENDING'), e['assigned_unit_id'],
    {_utc("e['reported_at']")}, {_utc("e['assigned_at']")}, {_utc("e['on_scene_at']")},
    {_utc("e['closed_at']")}, coalesce(e['version'], 1), doc
FROM (SELECT json_transform(doc, '{_EMERGENCY_FIELDS}') AS e, doc FROM sink_emergency_docs)
"""  # noqa: S608 - built from constants only

_PUT_UNITS = f"""
INSERT INTO units
SELECT u['id'], u['callsign'], u['type'], u['region'], coalesce(u['status'], 'AVAILABLE'),
    u['lat'], u['lon'], u['station'], u['emergency_id'], u['eta_s'], u['heading'],
    {_utc("u['updated_at']")}, coalesce(u['version'], 1), doc
FROM (SELECT json_transform(doc, '{_UNIT_FIELDS}') AS u, doc FROM sink_unit_docs)
"""  # noqa: S608 - built from constants only

_TEMP_TABLES = (
    "sink_parsed",
    "sink_new",
    "sink_emergency_docs",
    "sink_unit_changes",
    "sink_unit_docs",
)


def _moved_unit(base_doc: str, location_raw: str, logged_at: str) -> str:
    """``base_doc`` with the position fields of a unit_location, as Projection.apply sets them."""
    unit = json.loads(base_doc)
    move = json.loads(location_raw)
    unit.update(
        {
            "lat": move["lat"],
            "lon": move["lon"],
            "heading": move.get("heading"),
            "eta_s": move.get("eta_s"),
            "route_index": move.get("route_index"),
            "version": move["version"],
            "updated_at": move.get("occurred_at") or logged_at,
        }
    )
    return json.dumps(unit, separators=(",", ":"), ensure_ascii=False)


def _bytes_array(values: list[bytes | None], kind: pa.DataType) -> pa.Array:
    """A (large) binary or string Arrow array of ``values`` (None is null), from buffers.

    Not ``pa.array``: that imports pandas on first use (to check for pandas objects),
    which took 0.3-1 s of the first batch's GIL time here, stalling the fetch loop too,
    and some 60 MB of memory the sink never uses."""
    n = len(values)
    missing = [i for i, v in enumerate(values) if v is None] if None in values else []
    # without its None, ``values`` holds bytes only
    filled = cast(
        "Sequence[bytes]", [b"" if v is None else v for v in values] if missing else values
    )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, filled), dtype=np.int64, count=n), out=offsets[1:])
    validity = None
    if missing:
        present = np.ones(n, dtype=bool)
        present[missing] = False
        validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    data = b"".join(filled)
    return pa.Array.from_buffers(
        kind, n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=len(missing)
    )


def batch_table(records: Sequence[LogRecord], first_seq: int = 0) -> pa.Table:
    """The records as one Arrow table: the only per-record Python work of a batch.

    ``seq`` numbers them from ``first_seq``: the sink builds a batch's table in pieces, one
    per fetch, as the records arrive (see ``analytics.sink``)."""
    n = len(records)

    def column(kind: pa.DataType, dtype: type, name: str) -> pa.Array:
        numbers: np.ndarray = np.fromiter(map(attrgetter(name), records), dtype=dtype, count=n)
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(numbers)])

    return pa.Table.from_arrays(
        [
            pa.Array.from_buffers(
                pa.int64(),
                n,
                [None, pa.py_buffer(np.arange(first_seq, first_seq + n, dtype=np.int64))],
            ),
            column(pa.int32(), np.int32, "partition"),
            column(pa.int64(), np.int64, "offset"),
            column(pa.timestamp("ms"), np.int64, "timestamp"),
            _bytes_array([r.value for r in records], pa.large_binary()),
        ],
        schema=BATCH_SCHEMA,
    )


def write_batch(
    con: duckdb.DuckDBPyConnection,
    topic: str,
    records: Sequence[LogRecord],
    projection: Projection | None = None,
    *,
    table: pa.Table | None = None,
) -> BatchResult:
    """Store ``records`` (in log order) and the position after them in one transaction.

    The current state is folded in SQL from the stored ``emergencies``/``units`` rows, so
    nothing is kept in memory between batches. ``table`` is ``batch_table(records)`` if
    the caller built it already (the sink does, while the last batch is written).
    ``projection`` is accepted for older callers and ignored.
    """
    del projection
    result = BatchResult(records=len(records))
    if not records:
        return result
    con.register("sink_batch", batch_table(records) if table is None else table)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(_PARSE)
        con.execute(_NEW_EVENTS)
        window = {"cutoff": _first_logged(records) - DEDUPE_WINDOW}
        if _rowcount(con.execute(_KEY_HITS, window)):
            con.execute(_DROP_STORED, window)
        result.events = _rowcount(con.execute(_INSERT_EVENTS))
        con.execute('INSERT INTO sink_event_keys SELECT "key", logged_at FROM sink_new')
        result.rejects = _rowcount(con.execute(_INSERT_REJECTS))
        con.execute(_EMERGENCY_DOCS)
        con.execute("DELETE FROM emergencies WHERE id IN (SELECT id FROM sink_emergency_docs)")
        con.execute(_PUT_EMERGENCIES)
        con.execute(_UNIT_CHANGES)
        con.execute(_UNIT_DOCS)
        moved = [
            (uid, _moved_unit(base, raw, logged))
            for uid, base, raw, logged in con.execute(_UNIT_MOVES).fetchall()
        ]
        if moved:
            con.register(
                "sink_moved",
                pa.Table.from_arrays(
                    [
                        _bytes_array([m[0].encode() for m in moved], pa.large_string()),
                        _bytes_array([m[1].encode() for m in moved], pa.large_string()),
                    ],
                    names=["id", "doc"],
                ),
            )
            con.execute("INSERT INTO sink_unit_docs SELECT id, doc FROM sink_moved")
            con.unregister("sink_moved")
        con.execute("DELETE FROM units WHERE id IN (SELECT id FROM sink_unit_docs)")
        con.execute(_PUT_UNITS)
        con.execute(_UPSERT_OFFSETS, [topic])
        for name in _TEMP_TABLES:
            con.execute(f"DROP TABLE {name}")
        con.execute("COMMIT")
    except duckdb.Error as exc:
        _rollback(con)
        raise SinkError(f"writing a batch of {len(records)} events failed: {exc}") from exc
    finally:
        con.unregister("sink_batch")
    if result.rejects:
        log.warning(
            "%d of %d records are not events; kept in sink_rejects", result.rejects, result.records
        )
    return result


def _first_logged(records: Sequence[LogRecord]) -> datetime:
    """The earliest record time of a batch, naive UTC like the ``logged_at`` columns."""
    first_ms = min(r.timestamp for r in records)
    return datetime.fromtimestamp(first_ms / 1000, UTC).replace(tzinfo=None)


def _rowcount(cursor: duckdb.DuckDBPyConnection) -> int:
    rows = cursor.fetchall()
    return int(rows[0][0]) if rows else 0


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        log.debug("nothing to roll back")


# --- measuring the write path --------------------------------------------------------


@dataclass
class _Record:
    partition: int
    offset: int
    timestamp: int
    value: bytes


def bench_ingest(
    values: Sequence[bytes], db_path: str | Path = ":memory:", batch_size: int = 5_000
) -> float:
    """Events/s of ``write_batch`` alone over record ``values`` (in log order, partition 0)
    into a new database at ``db_path``, in batches of ``batch_size``. Building the
    records, creating the tables and one warm-up batch (on a scratch database) are not
    timed; every batch commits as in the sink."""
    records = [_Record(0, i, 1_735_689_600_000 + i, v) for i, v in enumerate(values)]
    scratch = duckdb.connect(":memory:")
    create_tables(scratch)
    write_batch(scratch, "warmup", records[:100])
    scratch.close()
    con = duckdb.connect(str(db_path))
    try:
        create_tables(con)
        started = time.perf_counter()
        for i in range(0, len(records), batch_size):
            write_batch(con, "bench", records[i : i + batch_size])
        elapsed = time.perf_counter() - started
    finally:
        con.close()
    return len(records) / elapsed


def bench_executemany(
    values: Sequence[bytes], db_path: str | Path = ":memory:", batch_size: int = 5_000
) -> float:
    """Events/s of the row-by-row peer on the same input as ``bench_ingest``: a pydantic
    decode, ``event_row`` and the Projection fold per event, then ``executemany`` inserts
    of the events and changed state rows and the offset, one transaction per batch."""
    con = duckdb.connect(str(db_path))
    try:
        create_tables(con)
        projection = Projection()
        names = EVENTS_SCHEMA.names
        started = time.perf_counter()
        for start in range(0, len(values), batch_size):
            rows, changed_e, changed_u = [], set(), set()
            for offset in range(start, min(start + batch_size, len(values))):
                event = decode_event(values[offset])
                row = event_row(event, 0, offset, 1_735_689_600_000 + offset, values[offset])
                rows.append([row[c] for c in names])
                if projection.apply(event):
                    e_ids, u_ids = _changed_ids(event)
                    changed_e.update(e_ids)
                    changed_u.update(u_ids)
            con.execute("BEGIN TRANSACTION")
            con.executemany(
                f"INSERT INTO events VALUES ({', '.join('?' * len(names))})",  # noqa: S608
                rows,
            )
            emergencies, units = projection.emergencies, projection.units
            for table, ids, state in (
                (
                    "emergencies",
                    changed_e,
                    [list(emergency_row(emergencies[i]).values()) for i in sorted(changed_e)],
                ),
                (
                    "units",
                    changed_u,
                    [list(unit_row(units[i]).values()) for i in sorted(changed_u)],
                ),
            ):
                if state:
                    con.executemany(
                        f"DELETE FROM {table} WHERE id = ?",  # noqa: S608
                        [[i] for i in sorted(ids)],
                    )
                    con.executemany(
                        f"INSERT INTO {table} VALUES "  # noqa: S608
                        f"({', '.join('?' * len(state[0]))})",
                        state,
                    )
            con.execute(
                "INSERT OR REPLACE INTO sink_offsets VALUES ('bench', 0, ?)",
                [min(start + batch_size, len(values))],
            )
            con.execute("COMMIT")
        return len(values) / (time.perf_counter() - started)
    finally:
        con.close()
