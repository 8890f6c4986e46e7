"""The ready analyst queries: plain SQL files in ``analytics/queries/``, run read-only.

Analysts can run the files in any DuckDB client against a snapshot
(``duckdb -readonly snap.duckdb < analytics/queries/response-times.sql``); the CLI runs
the same text.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from dispatchwire.errors import SinkError

QUERIES = ("response-times", "utilisation", "open-incidents", "busiest-areas")


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def sql_of(name: str) -> str:
    if name not in QUERIES:
        raise ValueError(f"unknown query {name!r}; one of {', '.join(QUERIES)}")
    return resources.files("analytics").joinpath("queries", f"{name}.sql").read_text()


def run_query(db: Path, name: str) -> QueryResult:
    """Run a ready query on a snapshot (or a stopped sink's database), read-only."""
    if not db.exists():
        raise SinkError(f"no database at {db}; take one with `dispatchwire snapshot PATH`")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as exc:
        raise SinkError(
            f"cannot open {db} read-only ({exc}); while the sink runs, query a snapshot: "
            "`dispatchwire snapshot snap.duckdb` then `--db snap.duckdb`"
        ) from exc
    try:
        cursor = con.execute(sql_of(name))
        columns = [d[0] for d in cursor.description or []]
        return QueryResult(columns, cursor.fetchall())
    except duckdb.Error as exc:
        raise SinkError(f"query {name} failed on {db}: {exc}") from exc
    finally:
        con.close()


def render(result: QueryResult, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(result.as_dicts(), default=str, indent=1)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return out.getvalue()
    cells = [[("" if v is None else str(v)) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(cells)} rows)")
    return "\n".join(lines)
