"""The replay stream as the dashboard's replay mode uses it: a clock for the time bar, and
pause/resume by the position built from the ids seen (real broker, the real routes)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from api import replay as replay_routes
from schemas.projection import Projection
from tests.analytics.test_replay import _phases, _sse, replay_app

pytestmark = pytest.mark.kafka


def _body(messages: list) -> list:
    return [m for m in messages if m[0] not in ("snapshot", "replay_clock", "replay_end")]


def test_replay_clock_ends_the_bar_even_after_a_clock_just_before_the_last_record(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (a flake of the test below on a loaded machine): when a clock message was
    due right before the last record, none followed it, so the bar stopped short of the end.
    With clocks due before every record that is the case for every window."""
    monkeypatch.setattr(replay_routes, "CLOCK_EVERY_S", 0.0)
    _, _, _, t1, t2 = _phases(settings)
    token = settings.authority_token.get_secret_value()
    timed = asyncio.run(_sse(settings, f"from={t1}&to={t2}&speed=max&clock=1&token={token}"))
    assert timed[-1][0] == "replay_end"
    assert timed[-2][0] == "replay_clock", timed[-3:]


def test_replay_clock_tells_the_record_time_and_leaves_the_messages_alone(settings) -> None:
    _, b, _, t1, t2 = _phases(settings)
    token = settings.authority_token.get_secret_value()
    query = f"from={t1}&to={t2}&speed=max&token={token}"
    plain = asyncio.run(_sse(settings, query))
    timed = asyncio.run(_sse(settings, query + "&clock=1"))

    assert [m for m in timed if m[0] != "replay_clock"] == plain
    clocks = [(i, m) for i, m in enumerate(timed) if m[0] == "replay_clock"]
    assert clocks, "no replay_clock message"
    # No id of its own (a client's last id stays the last event's): it is no position.
    assert all(m[1] == timed[i - 1][1] for i, m in clocks)
    # One before the first event, one right before the end, all inside the window, in order.
    assert timed[1][0] == "replay_clock" and timed[-2][0] == "replay_clock"
    times = [m[2]["time_ms"] for _, m in clocks]
    assert times == sorted(times)
    assert all(t1 <= t < t2 for t in times)
    assert clocks[0][1][2]["time"].endswith("Z")
    assert len(_body(timed)) == len(b)


def test_replay_resumed_from_the_ids_seen_sends_exactly_the_rest(settings) -> None:
    a, b, _, t1, t2 = _phases(settings)
    token = settings.authority_token.get_secret_value()
    whole = asyncio.run(_sse(settings, f"from={t1}&to={t2}&speed=max&token={token}"))
    snapshot, body = whole[0], _body(whole)
    assert len(body) == len(b) > 10

    # "Paused" after k messages: the last id seen is the position to resume from.
    k = len(body) // 3
    position = body[k - 1][1]
    stop = snapshot[2]["replay"]["to"]
    rest = asyncio.run(
        _sse(settings, f"from_position={position}&to_position={stop}&speed=max&token={token}")
    )

    assert rest[0][0] == "snapshot" and rest[-1][0] == "replay_end"
    assert rest[-1][1] == stop
    # Nothing sent twice, nothing lost; the new snapshot is the state the first k reached.
    assert sorted(m[1] for m in _body(rest)) == sorted(m[1] for m in body[k:])
    event_of = {(e.event, json.dumps(e.live_data(), sort_keys=True)): e for e in b}
    first_k = [event_of[(name, json.dumps(data, sort_keys=True))] for name, _, data in body[:k]]
    expected = Projection().apply_all(a + first_k).as_json()
    assert (rest[0][2]["emergencies"], rest[0][2]["units"]) == (
        expected["emergencies"],
        expected["units"],
    )


def test_replay_refuses_a_clock_that_is_not_0_or_1(settings) -> None:
    async def get() -> httpx.Response:
        app = replay_app(settings)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            token = settings.authority_token.get_secret_value()
            return await client.get(f"/api/replay/stream?clock=yes&token={token}")

    response = asyncio.run(get())
    assert response.status_code == 400
    assert response.json()["fields"] == [
        {"field": "clock", "reason": "1 (send replay_clock messages) or 0"}
    ]
