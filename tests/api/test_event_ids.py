"""Issue 10, item 6: every live message's data carries its event's ``event_id``, so a client
can drop a copy of an event the worker re-published (same event, new log position)."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect as ws_connect

from tests.api.helpers import SseClient, data
from tests.test_schemas import EVENTS

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.event)
def test_every_live_payload_carries_its_event_id(event) -> None:
    assert event.live_data()["event_id"] == event.event_id


def test_sse_and_ws_messages_carry_the_event_id_of_each_copy(api_settings, running_api, event_log):
    settings = api_settings()
    log = event_log(settings)
    api = running_api(settings)
    url = api.url.replace("http", "ws") + "/ws?token=dev-authority"
    with SseClient(api) as sse, ws_connect(url) as ws:
        ws.send(json.dumps({"last_event_id": None}))
        assert sse.next().event == "snapshot"
        assert json.loads(ws.recv(timeout=15))["event"] == "snapshot"
        created = log.emergency(region="north")
        unit = log.unit(region="north")
        assigned = log.assign(created, unit.unit)
        log.write(assigned)  # the worker re-publishing a recorded event after a crash
        written = [created, unit, assigned, assigned]
        got = sse.take(len(written))
        frames = [json.loads(ws.recv(timeout=15)) for _ in written]
    assert [(m.event, data(m)["event_id"]) for m in got] == [(e.event, e.event_id) for e in written]
    assert [(f["event"], f["id"], f["data"]) for f in frames] == [
        (m.event, m.id, data(m)) for m in got
    ]
    # the two copies: different log positions, one event id
    assert got[2].id != got[3].id and data(got[2]) == data(got[3])
    doc = api.get("/openapi.json").json()
    assert "event_id" in doc["components"]["schemas"]["CreatedEmergency"]["required"]
    assert "event_id" in doc["paths"]["/api/stream"]["get"]["description"]
