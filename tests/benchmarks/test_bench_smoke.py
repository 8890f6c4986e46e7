"""A tiny run of every benchmark, so ``make test`` proves the harness works (no timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks import e2e, fanout, kafka_floor, streams_bench, throughput
from tests.benchmarks.__main__ import targets
from tests.benchmarks.report import Row, table, write

TINY = fanout.Phases(reach_count=3, reach_rate=20.0, burst_count=5, burst_rate=100.0, drain_s=10.0)


def assert_measured(row: Row) -> None:
    assert not row.note.startswith("not measured"), row.note
    assert row.metrics, row


@pytest.mark.slow
@pytest.mark.parametrize("design", ["socketio", "naive_sse", "encode_once"])
def test_peer_fanout_reaches_every_client(design: str) -> None:
    row = fanout.run(design, 20, None, phases=TINY)
    assert_measured(row)
    assert row.metrics["connected"] == 20
    assert row.metrics["burst delivered %"] == 100.0
    assert row.metrics["reach all ms"] is not None
    assert row.metrics["KiB/idle conn"] is not None


@pytest.mark.kafka
@pytest.mark.slow
def test_api_fanout_and_e2e(kafka_bootstrap: str) -> None:
    row = fanout.run("api", 20, kafka_bootstrap, phases=TINY)
    assert_measured(row)
    assert row.metrics["connected"] == 20
    assert row.metrics["burst delivered %"] == 100.0
    latency, *hops = e2e.run(kafka_bootstrap, [10], rate=5.0, count=5)
    assert_measured(latency)
    assert latency.metrics["delivered %"] == 100.0
    # every report traced through every hop (from the records' own timestamps), then the
    # worker's and the API's CPU per report
    traced, cpu = hops[: len(e2e.HOPS)], hops[len(e2e.HOPS) :]
    assert [h.subject for h in traced] == [label for label, _, _ in e2e.HOPS]
    assert all(h.metrics["traced"] == 5 for h in traced), [h.metrics for h in traced]
    assert [h.subject.split()[0] for h in cpu] == ["worker", "API"]
    assert all(h.metrics["mean ms"] > 0 for h in cpu), [h.metrics for h in cpu]


@pytest.mark.kafka
def test_kafka_floor(kafka_bootstrap: str) -> None:
    row = kafka_floor.run(kafka_bootstrap, count=50, rate=100.0)
    assert_measured(row)
    assert row.metrics["received"] == 50


@pytest.mark.kafka
@pytest.mark.slow
def test_agent_against_raw_loop(kafka_bootstrap: str) -> None:
    rows = streams_bench.run(kafka_bootstrap, 200)
    for row in rows:
        assert_measured(row)
        assert row.metrics["events"] == 200


@pytest.mark.kafka
def test_sink_and_replay(kafka_bootstrap: str) -> None:
    rows = throughput.run(
        kafka_bootstrap, replay_events=2_000, sink_events=1_000, rowwise_events=200, emit_cap=500
    )
    assert [r.bench for r in rows] == ["sink ingest"] * 3 + ["replay"]
    for row in rows:
        assert_measured(row)
    assert rows[-1].params == {"events": 2_000, "re-emitted": 500}


def test_report_says_what_was_not_measured(tmp_path: Path) -> None:
    rows = [
        Row(
            "fan-out",
            "(a) python-socketio emit from handler",
            {"clients": 1_000},
            {"deliveries/s": 10_000.0},
        ),
        Row(
            "fan-out",
            "dispatchwire API (Kafka read model)",
            {"clients": 1_000},
            {"deliveries/s": 60_000.0},
        ),
        Row.not_measured("sink ingest", "analytics sink", "analytics/ has not landed"),
    ]
    checks = {c["target"]: c["status"] for c in targets(rows)}
    assert checks["fan-out at 1,000 >= 5x python-socketio"] == "met"
    assert checks["sink >= 200,000 events/s"] == "not measured"
    rendered = table(rows)
    assert "not measured: analytics/ has not landed" in rendered
    doc = json.loads(write(rows, list(targets(rows)), tmp_path, {}).read_text())
    assert doc["rows"][2]["note"].startswith("not measured")


def test_targets_of_issue_16_latency_and_the_compressed_year() -> None:
    rows = [
        Row("e2e latency", "x", {"clients": 1_000}, {"p50 ms": 10.0, "p99 ms": 50.0}),
        Row("compressed year", "after 1 day", {}, {"snapshot KiB": 10.0, "API RSS MiB": 80.0}),
        Row("compressed year", "after 30 days", {}, {"snapshot KiB": 25.0, "API RSS MiB": 90.0}),
    ]
    checks = {c["target"]: c["status"] for c in targets(rows)}
    assert checks["e2e p99 <= 60 ms at 1,000 clients"] == "met"
    assert checks["e2e p50 <= 15 ms at 1,000 clients (issue 16)"] == "met"
    assert checks["e2e p99 <= 40 ms at 1,000 clients (issue 16)"] == "missed"
    assert checks["compressed year: snapshot KiB within 2x of after one day"] == "missed"
    assert checks["compressed year: API RSS MiB within 2x of after one day"] == "met"
    assert checks["compressed year: worker RSS MiB within 2x of after one day"] == "not measured"
