"""The sink's DuckDB tables and how one batch of log records is written to them.

One batch is one DuckDB transaction holding the new ``events`` rows, the changed rows of
the current-state tables (``emergencies``, ``units``) and the Kafka position after the
batch (``sink_offsets``). Either all of it is on disk or none of it, so a sink killed at
any instant restarts from the position that matches its rows.

Rows go in through Arrow tables (DuckDB scans them in bulk); no row-by-row inserts.
Times are stored as UTC ``TIMESTAMP``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from dispatchwire.errors import SinkError
from schemas import (
    Emergency,
    EmergencyCreated,
    EmergencyUpdated,
    SchemaError,
    Unit,
    UnitLocation,
    UnitStatusUpdate,
    decode_event,
)
from schemas.projection import Projection

log = logging.getLogger(__name__)

DDL = """
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR PRIMARY KEY,      -- deterministic; a redelivered event is stored once
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
    raw VARCHAR NOT NULL               -- the record value exactly as it was in the log
);
CREATE TABLE IF NOT EXISTS emergencies (
    id VARCHAR, region VARCHAR, type VARCHAR, priority INTEGER, lat DOUBLE, lon DOUBLE,
    description VARCHAR, status VARCHAR, assigned_unit_id VARCHAR, reported_at TIMESTAMP,
    assigned_at TIMESTAMP, on_scene_at TIMESTAMP, closed_at TIMESTAMP, version INTEGER,
    doc VARCHAR                        -- the entity as JSON, to rebuild the fold on start
);
CREATE TABLE IF NOT EXISTS units (
    id VARCHAR, callsign VARCHAR, type VARCHAR, region VARCHAR, status VARCHAR, lat DOUBLE,
    lon DOUBLE, station VARCHAR, emergency_id VARCHAR, eta_s DOUBLE, heading DOUBLE,
    updated_at TIMESTAMP, version INTEGER, doc VARCHAR
);
CREATE TABLE IF NOT EXISTS sink_offsets (
    topic VARCHAR, "partition" INTEGER, next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, "partition")
);
CREATE TABLE IF NOT EXISTS sink_rejects (   -- records that are not events; kept, not retried
    "partition" INTEGER, "offset" BIGINT, error VARCHAR, raw BLOB
);
"""

TS = pa.timestamp("us")
EVENTS_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("event", pa.string()), ("action", pa.string()),
    ("region", pa.string()), ("command_id", pa.string()), ("occurred_at", TS),
    ("logged_at", TS), ("partition", pa.int32()), ("offset", pa.int64()),
    ("emergency_id", pa.string()), ("unit_id", pa.string()),
    ("emergency_status", pa.string()), ("unit_status", pa.string()),
    ("lat", pa.float64()), ("lon", pa.float64()), ("raw", pa.string()),
])
EMERGENCIES_SCHEMA = pa.schema([
    ("id", pa.string()), ("region", pa.string()), ("type", pa.string()),
    ("priority", pa.int32()), ("lat", pa.float64()), ("lon", pa.float64()),
    ("description", pa.string()), ("status", pa.string()), ("assigned_unit_id", pa.string()),
    ("reported_at", TS), ("assigned_at", TS), ("on_scene_at", TS), ("closed_at", TS),
    ("version", pa.int32()), ("doc", pa.string()),
])
UNITS_SCHEMA = pa.schema([
    ("id", pa.string()), ("callsign", pa.string()), ("type", pa.string()),
    ("region", pa.string()), ("status", pa.string()), ("lat", pa.float64()),
    ("lon", pa.float64()), ("station", pa.string()), ("emergency_id", pa.string()),
    ("eta_s", pa.float64()), ("heading", pa.float64()), ("updated_at", TS),
    ("version", pa.int32()), ("doc", pa.string()),
])
REJECTS_SCHEMA = pa.schema([
    ("partition", pa.int32()), ("offset", pa.int64()), ("error", pa.string()),
    ("raw", pa.binary()),
])


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
    con.execute(DDL)


def event_row(event: Any, partition: int, offset: int, timestamp_ms: int,
              raw: bytes) -> dict[str, Any]:
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
        "id": e.id, "region": e.region, "type": e.type.value, "priority": e.priority,
        "lat": e.lat, "lon": e.lon, "description": e.description, "status": e.status.value,
        "assigned_unit_id": e.assigned_unit_id, "reported_at": utc(e.reported_at),
        "assigned_at": utc(e.assigned_at), "on_scene_at": utc(e.on_scene_at),
        "closed_at": utc(e.closed_at), "version": e.version, "doc": e.model_dump_json(),
    }


def unit_row(u: Unit) -> dict[str, Any]:
    return {
        "id": u.id, "callsign": u.callsign, "type": u.type.value, "region": u.region,
        "status": u.status.value, "lat": u.lat, "lon": u.lon, "station": u.station,
        "emergency_id": u.emergency_id, "eta_s": u.eta_s, "heading": u.heading,
        "updated_at": utc(u.updated_at), "version": u.version, "doc": u.model_dump_json(),
    }


def load_projection(con: duckdb.DuckDBPyConnection) -> Projection:
    """The fold as of the stored position, rebuilt from the current-state tables."""
    projection = Projection()
    for (doc,) in con.execute("SELECT doc FROM emergencies").fetchall():
        e = Emergency.model_validate_json(doc)
        projection.emergencies[e.id] = e
    for (doc,) in con.execute("SELECT doc FROM units").fetchall():
        u = Unit.model_validate_json(doc)
        projection.units[u.id] = u
    return projection


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


def write_batch(con: duckdb.DuckDBPyConnection, topic: str, records: Sequence[LogRecord],
                projection: Projection) -> BatchResult:
    """Store ``records`` (in log order) and the position after them in one transaction.

    ``projection`` is folded forward in memory as the rows are built; if the transaction
    fails it is ahead of the file, so the caller must stop (a restart reloads it).
    """
    result = BatchResult(records=len(records))
    rows, rejects = [], []
    changed_e: set[str] = set()
    changed_u: set[str] = set()
    position: dict[int, int] = {}
    for rec in records:
        position[rec.partition] = max(position.get(rec.partition, 0), rec.offset + 1)
        try:
            event = decode_event(rec.value)
        except (SchemaError, UnicodeDecodeError) as exc:
            rejects.append({"partition": rec.partition, "offset": rec.offset,
                            "error": str(exc)[:500], "raw": rec.value})
            continue
        rows.append(event_row(event, rec.partition, rec.offset, rec.timestamp, rec.value))
        if projection.apply(event):
            e_ids, u_ids = _changed_ids(event)
            changed_e.update(e_ids)
            changed_u.update(u_ids)
    result.rejects = len(rejects)
    events = pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)
    emergencies = pa.Table.from_pylist(
        [emergency_row(projection.emergencies[i]) for i in sorted(changed_e)],
        schema=EMERGENCIES_SCHEMA)
    units = pa.Table.from_pylist(
        [unit_row(projection.units[i]) for i in sorted(changed_u)], schema=UNITS_SCHEMA)
    offsets = pa.table({"topic": [topic] * len(position),
                        "partition": pa.array(list(position), pa.int32()),
                        "next_offset": pa.array(list(position.values()), pa.int64())})
    try:
        con.execute("BEGIN TRANSACTION")
        before = _count(con)
        _insert(con, "events_batch", events, _INSERT_EVENTS)
        result.events = _count(con) - before
        _replace(con, "emergencies", emergencies)
        _replace(con, "units", units)
        if rejects:
            _insert(con, "rejects_batch", pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA),
                    "INSERT INTO sink_rejects SELECT * FROM rejects_batch")
        _insert(con, "offsets_batch", offsets,
                "INSERT INTO sink_offsets SELECT * FROM offsets_batch "
                'ON CONFLICT (topic, "partition") DO UPDATE SET next_offset = excluded.next_offset')
        con.execute("COMMIT")
    except duckdb.Error as exc:
        _rollback(con)
        raise SinkError(f"writing a batch of {len(records)} events failed: {exc}") from exc
    return result


# QUALIFY drops a duplicate inside the batch, OR IGNORE one stored by an earlier batch.
_INSERT_EVENTS = (
    "INSERT OR IGNORE INTO events SELECT * FROM events_batch "
    'QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY "partition", "offset") = 1'
)


def _insert(con: duckdb.DuckDBPyConnection, name: str, batch: pa.Table, sql: str) -> None:
    if batch.num_rows == 0:
        return
    con.register(name, batch)
    try:
        con.execute(sql)
    finally:
        con.unregister(name)


def _replace(con: duckdb.DuckDBPyConnection, table: str, batch: pa.Table) -> None:
    if batch.num_rows == 0:
        return
    con.register("state_batch", batch)
    try:
        con.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM state_batch)")  # noqa: S608 - fixed names
        con.execute(f"INSERT INTO {table} SELECT * FROM state_batch")  # noqa: S608
    finally:
        con.unregister("state_batch")


def _count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT count(*) FROM events").fetchall()[0]
    return int(row[0]) if row else 0


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        log.debug("nothing to roll back")
