"""The read model and the live stream: snapshot, then every event in log order, resume."""

from __future__ import annotations

import pytest

from tests.api.helpers import AUTHORITY, SseClient, assert_contiguous, data
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka


def test_state_is_the_fold_of_the_log_written_before_start(api_settings, running_api, event_log):
    settings = api_settings()
    log = event_log(settings)
    created = [log.emergency(region=r) for r in ("north", "south", "east")]
    unit = log.unit(region="north").unit
    log.assign(created[0], unit)

    api = running_api(settings)
    state = api.get("/api/state", headers=AUTHORITY).json()
    by_id = {e["id"]: e for e in state["emergencies"]}
    assert set(by_id) == {c.emergency.id for c in created}
    assert by_id[created[0].emergency.id]["status"] == "ASSIGNED"
    assert [u["status"] for u in state["units"]] == ["DISPATCHED"]
    assert sum(int(x) for x in state["position"].split(".")) == 5
    one = api.get(f"/api/emergencies/{created[1].emergency.id}").json()
    assert one["region"] == "south"
    assert api.get("/api/emergencies/nope").status_code == 404
    assert len(api.get("/api/emergencies", headers=AUTHORITY).json()) == 3
    assert api.get("/api/units", headers=AUTHORITY).json()[0]["id"] == unit.id


def test_snapshot_then_every_event_in_order_to_two_clients(api_settings, running_api, event_log):
    settings = api_settings()
    log = event_log(settings)
    first = log.emergency(region="north")
    api = running_api(settings)
    with SseClient(api) as a, SseClient(api) as b:
        snaps = [a.next(), b.next()]
        for snap in snaps:
            assert snap.event == "snapshot"
            body = data(snap)
            assert [e["id"] for e in body["emergencies"]] == [first.emergency.id]
            assert body["position"] == snap.id and body["reset"] is False
        written = [log.emergency(region=r) for r in ("north", "south", "east", "west")]
        got_a, got_b = a.take(4), b.take(4)
        for got in (got_a, got_b):
            assert [e.event for e in got] == ["emergency_created"] * 4
            assert {data(e)["id"] for e in got} == {w.emergency.id for w in written}
            assert_contiguous(snaps[0].id, [e.id for e in got])
        assert [e.id for e in got_a] == [e.id for e in got_b]
        assert got_a[-1].id == api.get("/api/state", headers=AUTHORITY).json()["position"]


def test_resume_after_a_dropped_connection_is_gap_free(api_settings, running_api, event_log):
    settings = api_settings()
    log = event_log(settings)
    api = running_api(settings)
    with SseClient(api) as client:
        start = client.next().id
        for region in ("north", "south", "north"):
            log.emergency(region=region)
        seen = client.take(3)
    for region in ("south", "east", "north", "west"):  # written while disconnected
        log.emergency(region=region)
    with SseClient(api, last_event_id=seen[-1].id) as again:
        rest = again.take(4)
        assert "snapshot" not in [e.event for e in rest]
        log.emergency(region="east")
        rest.append(again.next())
    ids = [e.id for e in seen + rest]
    assert_contiguous(start, ids)
    assert len(set(ids)) == 8


def test_resume_from_kafka_when_the_ring_no_longer_has_it(api_settings, running_api, event_log):
    settings = api_settings(api_ring_size=2)
    log = event_log(settings)
    api = running_api(settings)
    with SseClient(api) as client:
        start = client.next().id
        log.emergency(region="north")
        seen = [client.next()]
    for region in ("south", "east", "north", "west", "south"):
        log.emergency(region=region)
    wait_for(
        lambda: (
            api.services.model.position_id.count(".") == 1
            and sum(map(int, api.services.model.position_id.split("."))) == 6
        )
    )
    # resuming by query parameter, as a first connect would
    with SseClient(api, params={"last_event_id": seen[-1].id}) as again:
        rest = again.take(5)
    assert [e.event for e in rest] == ["emergency_created"] * 5
    assert_contiguous(start, [e.id for e in seen + rest])


def test_region_and_event_filters(api_settings, running_api, event_log):
    settings = api_settings()
    log = event_log(settings)
    api = running_api(settings)
    log.emergency(region="north")
    with SseClient(api, params={"region": "south", "events": "emergency_created"}) as client:
        snap = data(client.next())
        assert snap["emergencies"] == []
        log.unit(region="south")
        log.emergency(region="north")
        wanted = log.emergency(region="south")
        got = client.next()
        assert got.event == "emergency_created" and data(got)["id"] == wanted.emergency.id
    bad = api.get("/api/stream", headers=AUTHORITY, params={"events": "nonsense"})
    assert bad.status_code == 400 and bad.json()["fields"][0]["field"] == "events"
