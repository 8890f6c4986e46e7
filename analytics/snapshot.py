"""Point-in-time copies of the sink database that any DuckDB client opens read-only.

DuckDB lets one process hold a database file for writing and then nobody else may open it,
not even read-only. So while the sink runs, the sink itself makes the copy: ``dispatchwire
snapshot`` drops a request file next to the database, the sink sees it between two batches
(no transaction open, so the copy matches its ``sink_offsets`` exactly), copies with
``ATTACH`` + ``COPY FROM DATABASE`` and answers with a ``.done`` file. When no sink runs,
the caller copies the file itself through a read-only attach.

Each snapshot gets a ``snapshot_meta`` row: the log position it reflects, when it was taken,
how many events it holds. It is written under a temporary name and renamed into place, so a
reader never sees half a snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dispatchwire.errors import SinkError
from dispatchwire.settings import Settings
from schemas.position import format_position

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotInfo:
    path: str
    position: str
    events: int
    taken_at: str


def requests_dir(settings: Settings) -> Path:
    return settings.sink_db.with_name(settings.sink_db.name + ".requests")


def copy_database(
    con: duckdb.DuckDBPyConnection, source: str, target: Path, topic: str
) -> SnapshotInfo:
    """Copy attached database ``source`` to a new file ``target`` and stamp it."""
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    alias = f"snap_{uuid.uuid4().hex[:8]}"
    taken_at = datetime.now(UTC).replace(tzinfo=None)
    try:
        con.execute(f"ATTACH '{_sql_path(tmp)}' AS {alias}")
        try:
            con.execute(f"COPY FROM DATABASE {source} TO {alias}")
            position = {
                int(p): int(o)
                for p, o in con.execute(
                    f'SELECT "partition", next_offset FROM {alias}.sink_offsets WHERE topic = ?',  # noqa: S608
                    [topic],
                ).fetchall()
            }
            row = con.execute(
                f"SELECT count(*), max(occurred_at) FROM {alias}.events"  # noqa: S608
            ).fetchall()[0]
            events = int(row[0]) if row else 0
            con.execute(
                f"CREATE TABLE {alias}.snapshot_meta (taken_at TIMESTAMP, topic VARCHAR, "
                "position VARCHAR, events BIGINT, last_event_at TIMESTAMP)"
            )
            con.execute(
                f"INSERT INTO {alias}.snapshot_meta VALUES (?, ?, ?, ?, ?)",  # noqa: S608
                [taken_at, topic, format_position(position), events, row[1] if row else None],
            )
            con.execute(f"CHECKPOINT {alias}")
        finally:
            con.execute(f"DETACH {alias}")
        os.replace(tmp, target)
    except duckdb.Error as exc:
        raise SinkError(f"could not write snapshot {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    info = SnapshotInfo(str(target), format_position(position), events, taken_at.isoformat())
    log.info("snapshot %s at position %s (%d events)", target, info.position, events)
    return info


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def take_snapshot(settings: Settings, target: Path, timeout: float = 60.0) -> SnapshotInfo:
    """Write a snapshot of ``settings.sink_db`` to ``target``, whether or not the sink runs."""
    if not settings.sink_db.exists():
        raise SinkError(
            f"no sink database at {settings.sink_db}; start `dispatchwire sink` "
            "(or set DISPATCHWIRE_SINK_DB)"
        )
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{_sql_path(settings.sink_db.resolve())}' AS src (READ_ONLY)")
    except duckdb.IOException as exc:
        con.close()
        if "lock" not in str(exc).lower():
            raise SinkError(f"cannot open {settings.sink_db}: {exc}") from exc
        return _ask_running_sink(settings, target, timeout)
    try:
        return copy_database(con, "src", target, settings.events_topic)
    finally:
        con.close()


def _ask_running_sink(settings: Settings, target: Path, timeout: float) -> SnapshotInfo:
    folder = requests_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    request_id = uuid.uuid4().hex
    request = folder / f"{request_id}.json"
    done = folder / f"{request_id}.done"
    staging = folder / f"{request_id}.json.tmp"
    staging.write_text(json.dumps({"path": str(target.resolve())}))
    os.replace(staging, request)
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 2.0
    while not done.exists():
        if time.monotonic() > next_check:
            next_check = time.monotonic() + 2.0
            if not _locked(settings.sink_db) and not done.exists():
                request.unlink(missing_ok=True)  # the sink stopped; copy the file ourselves
                return take_snapshot(settings, target, timeout=max(deadline - time.monotonic(), 1))
        if time.monotonic() > deadline:
            request.unlink(missing_ok=True)
            raise SinkError(
                f"the sink holding {settings.sink_db} did not answer the snapshot request in "
                f"{timeout:.0f}s; check that `dispatchwire sink` is running and not stuck"
            )
        time.sleep(0.05)
    answer = json.loads(done.read_text())
    done.unlink(missing_ok=True)
    if not answer.get("ok"):
        raise SinkError(f"the sink could not take the snapshot: {answer.get('error')}")
    return SnapshotInfo(**answer["info"])


def _locked(path: Path) -> bool:
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as exc:
        return "lock" in str(exc).lower()
    return False


def serve_requests(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """Answer pending snapshot requests (called by the sink between batches)."""
    folder = requests_dir(settings)
    if not folder.is_dir():
        return 0
    served = 0
    source = con.execute("SELECT current_database()").fetchall()[0][0]
    for request in sorted(folder.glob("*.json")):
        try:
            target = Path(json.loads(request.read_text())["path"])
            answer = {
                "ok": True,
                "info": asdict(copy_database(con, source, target, settings.events_topic)),
            }
        except (OSError, ValueError, KeyError, SinkError) as exc:
            answer = {"ok": False, "error": str(exc)}
        staging = request.with_suffix(".done.tmp")
        staging.write_text(json.dumps(answer))
        os.replace(staging, request.with_suffix(".done"))
        request.unlink(missing_ok=True)
        served += 1
    return served
