"""Measured, not asserted: sink ingest rate (bulk vs row-by-row) and replay rate.

Results go to ``artifacts/analytics-bench.json`` and the test output (``-s``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from analytics.replay import LogWindow, Window, produce
from analytics.sink import Sink
from analytics.tables import EVENTS_SCHEMA, create_tables, event_row, write_batch
from infra.topics import ensure_topics
from schemas import decode_event, encode
from schemas.projection import Projection
from tests.analytics.story import busy_log, produce_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = datetime(2026, 3, 4, 6, 0, tzinfo=UTC)


@dataclass
class FakeRecord:  # the shape of a Kafka record, for the offline comparison
    partition: int
    offset: int
    timestamp: int
    value: bytes


def test_measure_sink_and_replay_rates(make_settings, tmp_path: Path, artifacts_dir: Path) -> None:
    story = busy_log(n_units=20, moves=1000, t0=T0, regions=("r1", "r2", "r3", "r4"))
    values = [encode(e) for e in story.events]
    records = [FakeRecord(0, i, 1_760_000_000_000 + i, v) for i, v in enumerate(values)]
    n = len(records)
    results: dict[str, object] = {"events": n}

    # Bulk path (Arrow, one transaction per 5000) vs executemany row by row, same data.
    bulk = duckdb.connect(str(tmp_path / "bulk.duckdb"))
    create_tables(bulk)
    started = time.perf_counter()
    projection = Projection()
    for i in range(0, n, 5_000):
        write_batch(bulk, "t", records[i:i + 5_000], projection)
    results["bulk_events_per_s"] = round(n / (time.perf_counter() - started))
    assert bulk.execute("SELECT count(*) FROM events").fetchall()[0][0] == n
    bulk.close()

    # Row by row is two orders of magnitude slower: measured on the first 2000 only.
    few = records[:2_000]
    rowwise = duckdb.connect(str(tmp_path / "rowwise.duckdb"))
    create_tables(rowwise)
    started = time.perf_counter()
    names = EVENTS_SCHEMA.names
    placeholders = ", ".join("?" for _ in names)
    rows = [event_row(decode_event(r.value), r.partition, r.offset, r.timestamp, r.value)
            for r in few]
    rowwise.execute("BEGIN")
    rowwise.executemany(f"INSERT OR IGNORE INTO events VALUES ({placeholders})",
                        [[row[c] for c in names] for row in rows])
    rowwise.execute("COMMIT")
    results["executemany_events_per_s"] = round(len(few) / (time.perf_counter() - started))
    assert rowwise.execute("SELECT count(*) FROM events").fetchall()[0][0] == len(few)
    rowwise.close()

    # End to end from the real broker.
    settings = make_settings()
    ensure_topics(settings)
    produce_events(settings, story.events)
    sink = Sink(settings)
    sink.open()
    try:
        started = time.perf_counter()
        stats = sink.run(until_caught_up=True)
        results["sink_from_kafka_events_per_s"] = round(stats.records
                                                        / (time.perf_counter() - started))
    finally:
        sink.close()
    assert stats.events == n

    started = time.perf_counter()
    replayed = sum(1 for _ in LogWindow(settings, Window()).records())
    results["replay_read_events_per_s"] = round(replayed / (time.perf_counter() - started))
    assert replayed == n

    started = time.perf_counter()
    window = LogWindow(settings, Window())
    sent = produce(settings, settings.topic("bench-replay"), window.records())
    results["replay_to_topic_events_per_s"] = round(sent / (time.perf_counter() - started))
    assert sent == n

    (artifacts_dir / "analytics-bench.json").write_text(json.dumps(results, indent=1))
    print("\nanalytics bench:", json.dumps(results))
