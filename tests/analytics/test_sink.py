"""The DuckDB sink against the real broker: exactly once across SIGKILLs, live snapshots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from kafka import KafkaConsumer, TopicPartition

from analytics.snapshot import take_snapshot
from infra.topics import ensure_topics
from schemas import decode_event
from schemas.position import format_position
from schemas.projection import Projection
from tests.analytics.conftest import run_cli
from tests.analytics.story import busy_log, produce_events
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
REGIONS = ("r1", "r2", "r3", "r4", "r5")


def _end_offsets(settings) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        tps = [
            TopicPartition(settings.events_topic, p)
            for p in consumer.partitions_for_topic(settings.events_topic)
        ]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _snapshot_events(settings, path: Path) -> int:
    return take_snapshot(settings, path, timeout=60).events


def test_sigkilled_sink_restarts_with_exactly_one_row_per_event(
    make_settings, start_sink, tmp_path: Path
) -> None:
    settings = make_settings(sink_batch_size=500)
    ensure_topics(settings)
    story = busy_log(n_units=20, moves=1500, t0=T0, regions=REGIONS)  # 30k+ events
    sent = produce_events(settings, story.events, duplicate_every=9)  # redeliveries in the log
    distinct = {e.event_id for e in story.events}
    assert len(sent) > len(distinct)

    seen_mid_ingest = []
    for kill in range(2):
        proc = start_sink(settings)
        probe = tmp_path / f"probe{kill}.duckdb"
        progress = wait_for(
            lambda p=probe: settings.sink_db.exists() and _snapshot_events(settings, p),
            timeout=60,
            message="the sink storing its first batches",
        )
        seen_mid_ingest.append(progress < len(distinct))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # At least one kill landed while events were still being written.
    assert any(seen_mid_ingest), "the sink finished before it could be killed; grow the log"

    final = start_sink(settings, "--until-caught-up")
    assert final.wait(timeout=180) == 0

    con = duckdb.connect(str(settings.sink_db), read_only=True)
    try:
        rows, unique = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).fetchall()[0]
        assert rows == unique == len(distinct)
        stored_ids = {r[0] for r in con.execute("SELECT event_id FROM events").fetchall()}
        assert stored_ids == distinct
        offsets = dict(con.execute('SELECT "partition", next_offset FROM sink_offsets').fetchall())
        ends = _end_offsets(settings)
        assert len([o for o in ends.values() if o]) > 1, "all regions on one partition"
        assert offsets == {p: o for p, o in ends.items() if o}
        # The current-state tables are the fold of the log.
        fold = Projection().apply_all(decode_event(v) for v in sent)
        units = {
            r[0]: json.loads(r[1]) for r in con.execute("SELECT id, doc FROM units").fetchall()
        }
        assert units == {u["id"]: u for u in fold.as_json()["units"]}
        emergencies = {r[0] for r in con.execute("SELECT id FROM emergencies").fetchall()}
        assert emergencies == set(fold.emergencies)
        assert con.execute("SELECT count(*) FROM sink_rejects").fetchall()[0][0] == 0
    finally:
        con.close()


def _read_in_other_process(path: Path) -> dict:
    code = (
        "import duckdb, json, sys\n"
        "c = duckdb.connect(sys.argv[1], read_only=True)\n"
        "meta = c.execute('SELECT position, events FROM snapshot_meta').fetchall()[0]\n"
        "rows = c.execute('SELECT count(*) FROM events').fetchall()[0][0]\n"
        "offs = c.execute('SELECT \"partition\", next_offset FROM sink_offsets').fetchall()\n"
        "print(json.dumps({'position': meta[0], 'meta_events': meta[1], 'rows': rows,"
        " 'offsets': offs}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def test_snapshot_taken_while_the_sink_writes_opens_in_another_process(
    make_settings, start_sink, tmp_path: Path
) -> None:
    settings = make_settings(sink_batch_size=300)
    ensure_topics(settings)
    start_sink(settings)
    wait_for(settings.sink_db.exists, timeout=60, message="the sink database")
    stop = threading.Event()

    def keep_producing() -> None:
        round_ = 0
        while not stop.is_set():
            story = busy_log(n_units=10, moves=50, t0=T0, prefix=f"r{round_}-", regions=REGIONS)
            produce_events(settings, story.events)
            round_ += 1

    producer = threading.Thread(target=keep_producing, daemon=True)
    producer.start()
    try:
        seen = []
        for i in range(3):
            wait_for(
                lambda: (
                    _snapshot_events(settings, tmp_path / "probe.duckdb")
                    > (seen[-1]["rows"] if seen else 0)
                ),
                timeout=60,
                message="more events stored",
            )
            path = tmp_path / f"snap{i}.duckdb"
            run_cli(settings, "snapshot", str(path))
            got = _read_in_other_process(path)
            # Rows and the stamped position agree: every offset before it is a row
            # (no duplicates in this log), nothing after it is.
            offsets = {int(p): int(o) for p, o in got["offsets"]}
            assert got["position"] == format_position(offsets)
            assert got["rows"] == got["meta_events"] == sum(offsets.values())
            seen.append(got)
        assert seen[0]["rows"] < seen[1]["rows"] < seen[2]["rows"]
    finally:
        stop.set()
        producer.join(timeout=60)
