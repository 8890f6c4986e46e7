"""``GET /api/emergencies/{id}/stream``: the reporter's tracking view, live, against the real
broker. It carries one emergency and its unit on the way, never the reporter's name or
phone nor any other emergency or unit, sends only when the view changes, follows a closed
emergency until it moves to history, refuses what the GET refuses, and holds a live
connection slot."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from api.openapi import TRACKING_UNIT_FIELDS
from dispatchwire.settings import Settings
from schemas.entities import Reporter
from tests.api.helpers import AUTHORITY, EventLog, RunningApi, SseClient, data
from tests.api.test_archive import close_and_archive
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

REPORTER = Reporter(name="Maija Reporter", phone="+358 40 123 4567")


def tracking(api: RunningApi, emergency_id: str, headers: dict[str, str] | None = None):
    return SseClient(api, headers=headers or {}, path=f"/api/emergencies/{emergency_id}/stream")


def views(stream: SseClient) -> list[tuple[str, dict]]:
    """Every message until the stream ends: (event, data)."""
    got = []
    while True:
        try:
            event = stream.next()
        except StopIteration:
            return got
        got.append((event.event, data(event)))


@pytest.fixture
def started(
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    event_log: Callable[[Settings], EventLog],
) -> Callable[..., tuple[EventLog, RunningApi]]:
    """Factory: an event log and a running API over fresh topics (settings overridden)."""

    def start(**overrides: object) -> tuple[EventLog, RunningApi]:
        settings = api_settings(**overrides)
        return event_log(settings), running_api(settings)

    return start


def test_the_stream_follows_one_emergency_until_it_moves_to_history(started) -> None:
    log, api = started()
    created = log.emergency(reporter=REPORTER, description="smoke on the third floor")
    unit = log.unit().unit

    with tracking(api, created.emergency.id) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        first = stream.next()
        assert first.event == "snapshot" and not first.id  # no ids: no resume, a fresh view
        state = data(first)
        assert [e["id"] for e in state["emergencies"]] == [created.emergency.id]
        assert state["emergencies"][0]["status"] == "PENDING"
        assert "reporter" not in state["emergencies"][0]
        assert state["units"] == []

        # Another emergency and another unit's moves change nothing here; the assignment
        # is the next message.
        other = log.emergency(reporter=REPORTER)
        other_unit = log.unit().unit
        log.location(other_unit.id, lat=60.19)
        log.assign(created, unit)
        assigned = data(stream.next())
        e = assigned["emergencies"][0]
        assert e["status"] == "ASSIGNED" and e["assigned_unit_id"] == unit.id
        assert [u["id"] for u in assigned["units"]] == [unit.id]
        assert set(assigned["units"][0]) == set(TRACKING_UNIT_FIELDS)

        log.location(other_unit.id, lat=60.20)
        log.location(unit.id, lat=60.18)  # the unit on its way moves
        moved = data(stream.next())
        assert moved["units"][0]["lat"] == 60.18

        done = log.complete(created, unit.id)
        closed = data(stream.next())  # followed on while it is recently closed
        assert closed["emergencies"][0]["status"] == "COMPLETED" and closed["units"] == []
        archived = log.archive(done)
        rest = views(stream)  # it moved to history: that, then the stream ends
    assert rest == [("emergency_archived", archived.live_data())]
    seen = {e["id"] for d in (assigned, moved, closed) for e in d["emergencies"]}
    assert seen == {created.emergency.id} and other.emergency.id not in seen
    text = "".join(event.data for event in stream.seen)
    assert REPORTER.name not in text and REPORTER.phone not in text  # type: ignore[operator]
    assert other_unit.id not in text


def test_the_stream_refuses_what_the_get_refuses(started) -> None:
    log, api = started()
    known = log.emergency().emergency.id
    gone, _ = close_and_archive(log)

    def refusal(emergency_id: str, **kw: object) -> tuple[int, dict]:
        response = api.get(f"/api/emergencies/{emergency_id}/stream", **kw)
        return response.status_code, response.json()

    status, body = refusal("no-such-emergency")
    assert status == 404 and body["fields"] == [{"field": "id", "reason": "unknown emergency"}]
    status, body = refusal(gone)
    assert status == 410 and body["history"] == ["replay", "duckdb"]
    status, body = refusal(known, headers={"Authorization": "Bearer not-a-token"})
    assert status == 401 and body["fields"][0]["field"] == "Authorization"
    # The authority gets the same tracking view: the page shows no more.
    with tracking(api, known, headers=AUTHORITY) as stream:
        assert "reporter" not in data(stream.next())["emergencies"][0]


def test_a_tracking_stream_holds_a_live_connection_slot(started) -> None:
    log, api = started(api_max_live_per_address=1)
    emergency_id = log.emergency().emergency.id

    with tracking(api, emergency_id) as held:
        held.next()
        refused = api.get(f"/api/emergencies/{emergency_id}/stream")
        assert refused.status_code == 429, refused.text
        assert refused.json()["fields"][0]["field"] == "connections"
        assert refused.headers["Retry-After"]

    def opens() -> bool:
        with httpx.stream("GET", f"{api.url}/api/emergencies/{emergency_id}/stream") as r:
            return r.status_code == 200

    # the slot comes back once the server sees the first stream gone
    wait_for(opens, timeout=15, interval=0.2, message="a slot given back")


def test_a_stream_ends_cleanly_when_the_server_shuts_down(started) -> None:
    """Shutdown ends every tracking stream (``Hub.closing``) instead of leaving uvicorn to
    cut them off after its grace period: the client sees the stream end, not a broken
    connection."""
    log, api = started()
    emergency_id = log.emergency().emergency.id
    with tracking(api, emergency_id) as stream:
        stream.next()
        stopping = threading.Thread(target=api.stop, name="stop-api")
        stopping.start()
        assert views(stream) == []  # a clean end: no exception, nothing more
        stopping.join(30)
    assert not api.thread.is_alive()
