"""A unit token's feed carries no reporter's name or phone: units see where and what, who
called is the dispatcher's. Every path a unit can read is checked against the authority's,
which keeps them: the snapshot, live messages (SSE and WebSocket), a resume from the ring
and from Kafka, ``/api/state`` and ``/api/emergencies`` (a resync sends the
same redacted snapshot, ``Feed.select``)."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect as ws_connect

from schemas.entities import Reporter
from tests.api.helpers import AUTHORITY, UNIT, SseClient, data

pytestmark = pytest.mark.kafka

CALLER = Reporter(name="Ann Caller", phone="+358 40 1234567")


def reporters(payload: object) -> list[object]:
    """Every ``reporter`` value anywhere in ``payload`` (JSON)."""
    found: list[object] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "reporter":
                    found.append(inner)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(payload)
    return found


def named(payload: object) -> bool:
    return any(r is not None for r in reporters(payload))


def test_a_unit_token_reads_no_reporter_on_any_path(api_settings, running_api, event_log):
    settings = api_settings(api_ring_size=4)
    log = event_log(settings)
    api = running_api(settings)
    first = log.emergency(region="north", reporter=CALLER)
    log.assign(first, log.unit(region="north").unit)

    for headers in (UNIT, AUTHORITY):
        with SseClient(api, headers=headers) as live:
            snapshot = live.next()
            assert snapshot.event == "snapshot"
            assert len(reporters(data(snapshot))) == len(data(snapshot)["emergencies"]) >= 1
            assert named(data(snapshot)) is (headers is AUTHORITY), headers
            log.emergency(region="south", reporter=CALLER)
            created = live.until(lambda e: e.event == "emergency_created")[-1]
            assert named(data(created)) is (headers is AUTHORITY)
            assert data(created)["description"] == "test"  # the rest is all there
        state = api.get("/api/state", headers=headers).json()
        listed = api.get("/api/emergencies", headers=headers).json()
        assert named(state) is named(listed) is (headers is AUTHORITY)
        assert len(reporters(listed)) == len(listed) >= 2

    # resume: from the ring (a recent id) and from Kafka (older than the ring's 4 messages)
    with SseClient(api, headers=UNIT) as live:
        start = live.next().id
    log.assign(log.emergency(region="north", reporter=CALLER), log.unit(region="north").unit)
    with SseClient(api, headers=UNIT, last_event_id=start) as resumed:
        backlog = resumed.until(lambda e: e.event == "emergency_updated")
    assert [e.event for e in backlog][-1] == "emergency_updated"
    assert reporters(data(backlog[-1])) == [None]
    assert not any(named(data(e)) for e in backlog)
    for _ in range(6):
        log.emergency(region="south", reporter=CALLER)
    with SseClient(api, headers=UNIT, last_event_id=start) as replayed:
        kafka = replayed.take(9)
    assert [e.event for e in kafka].count("emergency_created") >= 7
    assert not any(named(data(e)) for e in kafka)
    with SseClient(api, headers=AUTHORITY, last_event_id=start) as replayed:
        assert sum(named(data(e)) for e in replayed.take(9)) >= 7

    # the WebSocket fallback, token in the first frame
    with ws_connect(api.url.replace("http", "ws") + "/ws") as ws:
        ws.send(json.dumps({"token": "dev-unit"}))
        snapshot = json.loads(ws.recv(timeout=10))
        assert snapshot["event"] == "snapshot" and not named(snapshot["data"])
        log.emergency(region="north", reporter=CALLER)
        while (message := json.loads(ws.recv(timeout=10)))["event"] != "emergency_created":
            pass
        assert reporters(message["data"]) == [None]
