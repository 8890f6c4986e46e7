"""Issue 16, part 2: unit positions reach a live client conflated, as ``unit_locations``
frames of each unit's latest position, while status events keep their place in the log
order, and a frame's id is a log position a client can resume from.

Real broker, real API (uvicorn), real SSE and WebSocket clients. The frame rate is low
(one per ``INTERVAL_S``) so that a burst written at once lands inside one interval."""

from __future__ import annotations

import json

import pytest
from httpx_sse import ServerSentEvent
from websockets.sync.client import connect as ws_connect

from schemas.entities import UnitStatus
from schemas.events import UnitLocation
from schemas.live import frame_positions
from tests.api.helpers import EventLog, SseClient, data, positions
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

INTERVAL_S = 2.0  # long enough that a burst written in one flush falls into one frame


def move(log: EventLog, unit_id: str, lat: float, region: str = "north") -> UnitLocation:
    """Write one ``unit_location`` of ``unit_id`` (not flushed: the caller writes a burst)."""
    log.autoflush = False
    try:
        return log.location(unit_id, lat, region=region)
    finally:
        log.autoflush = True


def frame_units(event: ServerSentEvent) -> dict[str, float]:
    assert event.event == "unit_locations", (event.event, event.data[:200])
    units = frame_positions(data(event))
    ids = [u["unit_id"] for u in units]
    assert len(ids) == len(set(ids)), f"a unit twice in one frame: {ids}"
    return {u["unit_id"]: u["lat"] for u in units}


def primed(client: SseClient, log: EventLog) -> None:
    """Start the client's frame interval: one position, and its frame. The burst written
    next is then due in the following frame, an interval later."""
    move(log, "u-primer", 60.0)
    log.producer.flush()
    assert frame_units(client.next()) == {"u-primer": 60.0}


@pytest.fixture
def fleet(api_settings, running_api, event_log):
    settings = api_settings(api_position_frames_per_s=1 / INTERVAL_S)
    log = event_log(settings)
    units = [log.unit(region="north", unit_id=f"u-{n}").unit_id for n in range(3)]
    log.unit(region="north", unit_id="u-primer")
    return log, units, running_api(settings)


def test_a_burst_of_positions_reaches_a_client_as_one_frame_of_latest_positions(fleet):
    log, units, api = fleet
    with (
        ws_connect(api.url.replace("http", "ws") + "/ws?token=dev-authority") as ws,
        SseClient(api) as client,
    ):
        assert client.next().event == "snapshot"
        assert json.loads(ws.recv(timeout=15))["event"] == "snapshot"
        primed(client, log)
        assert json.loads(ws.recv(timeout=15))["event"] == "unit_locations"
        latest = {}
        for step in range(4):  # 4 positions of each of 3 units, in one flush
            for n, unit_id in enumerate(units):
                latest[unit_id] = 61.0 + step + n / 10
                move(log, unit_id, latest[unit_id])
        log.producer.flush()
        frame = client.next()
        ws_frame = json.loads(ws.recv(timeout=15))
    # one frame, each unit once, at its latest position (not 12 unit_location messages)
    assert frame_units(frame) == latest
    assert frame.id == api.services.model.position_id  # the position after the last move
    assert ws_frame["event"] == "unit_locations" and ws_frame["id"] == frame.id
    assert ws_frame["data"] == data(frame)
    assert "event_id" not in frame.data  # the frame's id names its place in the log


def test_a_status_event_between_positions_stays_between_their_frames(fleet):
    log, units, api = fleet
    a, b = units[0], units[1]
    with SseClient(api) as client:
        assert client.next().event == "snapshot"
        primed(client, log)
        move(log, a, 61.0)
        move(log, b, 61.5)
        move(log, a, 62.0)
        log.producer.flush()
        log.unit(region="north", unit_id=units[2], status=UnitStatus.OUT_OF_SERVICE)  # a fact
        move(log, a, 63.0)
        move(log, b, 63.5)
        log.producer.flush()
        before = client.next()
        assert frame_units(before) == {a: 62.0, b: 61.5}  # flushed ahead of the status event
        status = client.next()
        assert status.event == "unit_status_update" and data(status)["unit_id"] == units[2]
        after = client.next()
        assert frame_units(after) == {a: 63.0, b: 63.5}
    ids = positions([before.id, status.id, after.id])
    assert ids[0] < ids[1] < ids[2]
    assert sum(ids[1]) - sum(ids[0]) == 1  # nothing between the frame and the status event


def test_resuming_from_a_frame_id_gives_no_gap_and_no_duplicate(fleet):
    log, units, api = fleet
    a, b = units[0], units[1]
    with SseClient(api) as client:
        assert client.next().event == "snapshot"
        primed(client, log)
        move(log, a, 61.0)
        move(log, a, 62.0)
        log.producer.flush()
        first = client.next()
        assert frame_units(first) == {a: 62.0}
    # written while the client is away: a fact, then more positions
    created = log.emergency(region="north")
    move(log, a, 63.0)
    move(log, b, 63.5)
    move(log, a, 64.0)
    log.producer.flush()
    model = api.services.model
    wait_for(lambda: model.projection.units[a].lat == 64.0, 15, message="the moves folded")
    end = model.position_id
    with SseClient(api, last_event_id=first.id) as again:
        missed, frame = again.take(2)
        # the backlog came from the ring, conflated; the feed goes on live after it
        later = log.emergency(region="north")
        live = again.next()
    assert missed.event == "emergency_created" and data(missed)["id"] == created.emergency.id
    assert sum(positions([missed.id])[0]) - sum(positions([first.id])[0]) == 1
    assert frame_units(frame) == {a: 64.0, b: 63.5}  # not 62.0 again, not 63.0 stale
    assert frame.id == end
    assert live.event == "emergency_created" and data(live)["id"] == later.emergency.id
    assert sum(positions([live.id])[0]) - sum(positions([frame.id])[0]) == 1
    # and from the last frame's id: nothing before it again, the next fact at once
    with SseClient(api, last_event_id=frame.id) as third:
        nxt = third.next()
    assert nxt.event == "emergency_created" and nxt.id == live.id
