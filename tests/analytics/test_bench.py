"""Measured, not asserted: sink ingest rate (bulk vs row-by-row) and replay rate.

Results go to ``artifacts/analytics-bench.json`` and the test output (``-s``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from analytics.logio import LogWindow, Window, produce
from analytics.sink import Sink
from analytics.tables import bench_executemany, bench_ingest
from infra.topics import ensure_topics
from schemas import encode
from tests.analytics.story import busy_log, produce_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = datetime(2026, 3, 4, 6, 0, tzinfo=UTC)


def test_measure_sink_and_replay_rates(make_settings, tmp_path: Path, artifacts_dir: Path) -> None:
    story = busy_log(n_units=20, moves=1000, t0=T0, regions=("r1", "r2", "r3", "r4"))
    values = [encode(e) for e in story.events]
    n = len(values)
    results: dict[str, object] = {"events": n}

    # The set-based write path and the row-by-row executemany peer, same data, same batches.
    results["bulk_events_per_s"] = round(bench_ingest(values, tmp_path / "bulk.duckdb"))
    bulk = duckdb.connect(str(tmp_path / "bulk.duckdb"), read_only=True)
    assert bulk.execute("SELECT count(*) FROM events").fetchall()[0][0] == n
    bulk.close()
    # Row by row is an order of magnitude slower: measured on the first 5000 only.
    results["executemany_events_per_s"] = round(
        bench_executemany(values[:5_000], tmp_path / "rowwise.duckdb")
    )

    # End to end from the real broker.
    settings = make_settings()
    ensure_topics(settings)
    produce_events(settings, story.events)
    sink = Sink(settings)
    sink.open()
    try:
        started = time.perf_counter()
        stats = sink.run(until_caught_up=True)
        results["sink_from_kafka_events_per_s"] = round(
            stats.records / (time.perf_counter() - started)
        )
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
