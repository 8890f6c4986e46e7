"""Replay against the real broker: windows, topic to topic, JSON Lines, the SSE stream."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse
from starlette.applications import Starlette

from analytics import logio
from analytics.logio import LogWindow, Window
from analytics.replay import replay_to_topic
from api.app import api_error
from api.auth import Auth
from api.http import ApiError
from api.replay import routes
from infra.topics import ensure_topic_like, ensure_topics
from schemas import decode_event
from schemas.position import Position, format_position
from schemas.projection import Projection
from tests.analytics.conftest import run_cli
from tests.analytics.story import Story, busy_log, produce_events
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
REGIONS = ("r1", "r2", "r3", "r4")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _phases(settings) -> tuple[list, list, list, int, int]:
    """Three phases of one story on the log; returns (a, b, c, t1_ms, t2_ms) where the
    record times of phase b are exactly those in [t1, t2)."""
    s = Story()
    for i, region in enumerate(REGIONS):
        s.unit(f"u{i}", "ambulance", region, T0, 60.17 + i / 100, 24.94)
        s.report(f"e{i}", "medical", region, T0, 60.171 + i / 100, 24.941)
    a = list(s.events)
    for i, _ in enumerate(REGIONS):
        s.assign(f"e{i}", f"u{i}", T0 + timedelta(minutes=1))
        for k in range(20):
            s.move(f"u{i}", T0 + timedelta(minutes=1, seconds=k), 60.17 + k / 1000, 24.94)
        s.on_scene(f"e{i}", T0 + timedelta(minutes=2))
    b = s.events[len(a) :]
    for i, _ in enumerate(REGIONS[:2]):
        s.complete(f"e{i}", T0 + timedelta(minutes=9))
    c = s.events[len(a) + len(b) :]
    produce_events(settings, a)
    t1 = _now_ms() + 1
    wait_for(lambda: _now_ms() > t1, message="the clock to pass t1")
    produce_events(settings, b)
    t2 = _now_ms() + 1
    wait_for(lambda: _now_ms() > t2, message="the clock to pass t2")
    produce_events(settings, c)
    return a, b, c, t1, t2


def _topic_values(settings, topic: str) -> list[bytes]:
    return [r.value for r in LogWindow(settings, Window(), topic).records()]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_replayed_time_window_folds_to_the_same_state(settings) -> None:
    a, b, _, t1, t2 = _phases(settings)
    target = settings.topic("replayed")
    run_cli(
        settings,
        "replay",
        "--to-topic",
        target,
        "--from",
        _iso(t1),
        "--to",
        _iso(t2),
        "--speed",
        "max",
    )
    replayed = [decode_event(v) for v in _topic_values(settings, target)]
    assert sorted(e.event_id for e in replayed) == sorted(e.event_id for e in b)
    assert Projection().apply_all(replayed).as_json() == Projection().apply_all(b).as_json()
    # On top of the state at the window start, it gives the state at the window end.
    assert Projection().apply_all(a + replayed).as_json() == Projection().apply_all(a + b).as_json()


def test_replay_at_speed_by_offsets_keeps_each_region_in_order(settings) -> None:
    a, b, _, _, _ = _phases(settings)
    # The offset window of phases a and b: from the beginning to the first offset of c.
    everything = list(LogWindow(settings, Window()).records())
    stop: dict[int, int] = {}
    for rec in everything:
        if decode_event(rec.value).event_id in {e.event_id for e in a + b}:
            stop[rec.partition] = rec.offset + 1
    target = settings.topic("replayed-x")
    run_cli(
        settings,
        "replay",
        "--to-topic",
        target,
        "--to-position",
        format_position(stop),
        "--speed",
        "50",
    )
    replayed = [decode_event(v) for v in _topic_values(settings, target)]
    for region in REGIONS:
        assert [e.event_id for e in replayed if e.region == region] == [
            e.event_id for e in a + b if e.region == region
        ]
    assert Projection().apply_all(replayed).as_json() == Projection().apply_all(a + b).as_json()


def test_export_then_import_round_trips_byte_identical_events(settings, tmp_path: Path) -> None:
    a, b, c, _, _ = _phases(settings)
    sent = produce_events(settings, a[:3])  # redelivered copies are events of the log too
    original = _topic_values(settings, settings.events_topic)
    exported = tmp_path / "drill.jsonl"
    run_cli(settings, "export", str(exported))
    lines = exported.read_bytes().splitlines()
    assert sorted(lines) == sorted(original)
    assert len(lines) == len(a) + len(b) + len(c) + len(sent)

    drill = settings.topic("drill")
    run_cli(settings, "import", str(exported), "--topic", drill)
    again = tmp_path / "again.jsonl"
    run_cli(settings, "export", str(again), "--topic", drill)
    lines_again = again.read_bytes().splitlines()
    assert sorted(lines_again) == sorted(lines)
    for region in REGIONS:  # and each region's events keep their order

        def of(values: list[bytes], r: str = region) -> list[bytes]:
            return [v for v in values if json.loads(v)["region"] == r]

        assert of(lines_again) == of(lines) == of(original)


def test_import_rejects_a_line_that_is_not_an_event(settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "emergency_created", "region": "r1"}\n')
    import subprocess
    import sys

    from tests.conftest import settings_env

    proc = subprocess.run(
        [sys.executable, "-m", "dispatchwire", "import", str(bad), "--topic", settings.topic("x")],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "bad.jsonl:1" in proc.stderr


def test_records_are_merged_in_time_order_across_many_small_fetches(settings, monkeypatch) -> None:
    # Small fetches force the merge to work chunk by chunk, partitions running ahead.
    monkeypatch.setattr(logio, "FETCH_RECORDS", 7)
    story = busy_log(n_units=8, moves=25, t0=T0, regions=REGIONS)
    produce_events(settings, story.events)
    records = list(LogWindow(settings, Window()).records())
    assert sorted(r.value for r in records) == sorted(
        e.model_dump_json().encode() for e in story.events
    )
    assert len({r.partition for r in records}) == settings.partitions
    stamps = [r.timestamp for r in records]
    assert stamps == sorted(stamps)
    for partition in range(settings.partitions):
        offsets = [r.offset for r in records if r.partition == partition]
        assert offsets == sorted(offsets)


def test_fast_replay_into_a_topic_of_other_partition_count_keeps_keys_and_region_order(
    settings, monkeypatch
) -> None:
    monkeypatch.setattr(logio, "FETCH_RECORDS", 7)
    story = busy_log(n_units=8, moves=10, t0=T0, regions=REGIONS)
    produce_events(settings, story.events)
    # An offset window ending inside a fetch: all but the last 5 records of each partition.
    whole = LogWindow(settings, Window())
    stop = Position(max(o - 5, 0) for o in whole.stop)
    whole.close()
    inside = [r for r in LogWindow(settings, Window()).records() if r.offset < stop[r.partition]]
    target = settings.topic("replayed-3")
    ensure_topic_like(settings, target, partitions=3)
    stats = replay_to_topic(settings, Window(stop=stop), target)
    assert stats.events == len(inside) == sum(stop)
    replayed = list(LogWindow(settings, Window(), target).records())
    assert sorted(r.value for r in replayed) == sorted(r.value for r in inside)
    for rec in replayed:  # keyed by region, as the worker keys them
        assert rec.key == json.loads(rec.value)["region"].encode()
    for region in REGIONS:

        def of(records: list, r: str = region) -> list[bytes]:
            return [x.value for x in records if x.key == r.encode()]

        assert of(replayed) == of(inside)


def test_export_refuses_a_record_that_is_not_one_line(settings, tmp_path: Path) -> None:
    # A value with a raw newline would become two lines and break the round trip.
    event = _one_event()[0]
    pretty = json.dumps(json.loads(event.model_dump_json()), indent=1).encode()
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        producer.send(settings.events_topic, key=b"r1", value=pretty, partition=0).get(30)
    finally:
        producer.close()
    import subprocess
    import sys

    from tests.conftest import settings_env

    out = tmp_path / "x.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "dispatchwire", "export", str(out)],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{settings.events_topic}:0:0" in proc.stderr
    assert "newline" in proc.stderr


def replay_app(settings) -> Starlette:
    """The API's replay routes alone, with the API's auth and error answers."""
    return Starlette(
        routes=routes(settings, Auth(settings)), exception_handlers={ApiError: api_error}
    )


async def _sse(settings, query: str) -> list[tuple[str, str, object]]:
    app = replay_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        aconnect_sse(client, "GET", f"/api/replay/stream?{query}") as source,
    ):
        return [(m.event, m.id, json.loads(m.data)) async for m in source.aiter_sse()]


def test_replay_sse_stream_sends_snapshot_then_live_messages(settings) -> None:
    a, b, _, t1, t2 = _phases(settings)
    token = settings.authority_token.get_secret_value()
    messages = asyncio.run(_sse(settings, f"from={t1}&to={t2}&speed=max&token={token}"))
    names = [m[0] for m in messages]
    assert names[0] == "snapshot" and names[-1] == "replay_end"
    snapshot = messages[0][2]
    expected = Projection().apply_all(a).as_json()
    assert (snapshot["emergencies"], snapshot["units"]) == (
        expected["emergencies"],
        expected["units"],
    )
    body = messages[1:-1]
    assert sorted(n for n, _, _ in body) == sorted(e.event for e in b)
    # The same live messages as the window's events, each partition in log order.
    expected_body = [[e.event, e.live_data()] for e in b]
    assert sorted(json.dumps(x, sort_keys=True) for x in expected_body) == sorted(
        json.dumps([n, d], sort_keys=True) for n, _, d in body
    )
    # Every id is the log position after its message: one partition on by one record or
    # more (more: records skipped at the window's start or by compaction), none back.
    ids = [Position.parse(i) for _, i, _ in body]
    for before, after in zip([Position.parse(messages[0][1]), *ids], ids, strict=False):
        moved = [p for p, (x, y) in enumerate(zip(before, after, strict=True)) if x != y]
        assert len(moved) == 1 and after[moved[0]] > before[moved[0]]
    assert str(ids[-1]) == messages[0][2]["replay"]["to"] == messages[-1][1]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("speed=2", 401, "Authorization"),
        ("speed=2&token=wrong", 401, "Authorization"),
        ("speed=2&token={u}", 403, "Authorization"),
        ("speed=2&token={r}", 403, "Authorization"),
        ("speed=fast&token={t}", 400, "speed"),
        ("from=yesterday&token={t}", 400, "from"),
        ("from_position=0-5&token={t}", 400, "from_position"),
    ],
)
def test_replay_sse_refuses_bad_requests(settings, query: str, status: int, field: str) -> None:
    async def get() -> httpx.Response:
        app = replay_app(settings)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            return await client.get(
                "/api/replay/stream?"
                + query.format(
                    t=settings.authority_token.get_secret_value(),
                    u=settings.unit_token.get_secret_value(),
                    r=settings.reporter_token.get_secret_value(),
                )
            )

    response = asyncio.run(get())
    assert response.status_code == status
    assert [e["field"] for e in response.json()["fields"]] == [field]


def test_snapshot_download_is_for_the_authority_only(settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    produce_events(settings, _one_event())
    run_cli(settings, "sink", "--until-caught-up")

    async def get(headers: dict[str, str]) -> httpx.Response:
        app = replay_app(settings)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            return await client.get("/api/snapshot", headers=headers)

    assert asyncio.run(get({})).status_code == 401
    token = settings.authority_token.get_secret_value()
    response = asyncio.run(get({"Authorization": f"Bearer {token}"}))
    assert response.status_code == 200
    assert response.headers["x-log-position"]
    path = tmp_path / "downloaded.duckdb"
    path.write_bytes(response.content)
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 1
        assert (
            con.execute("SELECT position FROM snapshot_meta").fetchall()[0][0]
            == response.headers["x-log-position"]
        )
    finally:
        con.close()


def _one_event() -> list:
    s = Story()
    s.unit("u1", "ambulance", "r1", T0, 60.17, 24.94)
    return s.events
