"""Resume across an API restart, and the explicit reset when a position is gone."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaAdminClient, TopicPartition
from websockets.sync.client import connect as ws_connect

from tests.api.helpers import SseClient, assert_contiguous, data, positions
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka


def test_resume_across_an_api_restart(api_settings, running_api, event_log):
    settings = api_settings()
    log = event_log(settings)
    log.emergency(region="north")
    first = running_api(settings)
    with SseClient(first) as client:
        start = client.next().id
        log.emergency(region="south")
        log.emergency(region="north")
        seen = client.take(2)
    first.stop()
    for region in ("east", "west", "south"):  # written while no API runs
        log.emergency(region=region)
    second = running_api(settings)  # a new server in the same process: AppStatus is no issue
    with SseClient(second, last_event_id=seen[-1].id) as again:
        rest = again.take(3)
        log.emergency(region="north")
        rest.append(again.next())
    assert all(e.event == "emergency_created" for e in rest)
    assert_contiguous(start, [e.id for e in seen + rest])


@pytest.mark.parametrize("last_event_id", ["999.999", "not-a-position", "1.2.3.4.5", ""])
def test_unknown_position_gets_a_reset_snapshot(
    api_settings, running_api, event_log, last_event_id
):
    settings = api_settings()
    log = event_log(settings)
    created = log.emergency(region="north")
    api = running_api(settings)
    with SseClient(api, params={"last_event_id": last_event_id}) as client:
        snap = client.next()
    assert snap.event == "snapshot"
    body = data(snap)
    assert body["reset"] is (last_event_id != "")
    assert [e["id"] for e in body["emergencies"]] == [created.emergency.id]
    assert snap.id == body["position"]


def test_position_deleted_from_the_log_gets_a_reset_snapshot(api_settings, running_api, event_log):
    settings = api_settings(api_ring_size=1, partitions=1)
    log = event_log(settings)
    api = running_api(settings)
    with SseClient(api) as client:
        client.next()
        log.emergency(region="north")
        old = client.next().id  # "1"
    for _ in range(3):
        log.emergency(region="north")
    wait_for(lambda: api.services.model.position_id == "4")
    # the records after `old` leave the log for real (as retention would remove them)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.delete_records({TopicPartition(settings.events_topic, 0): 3})
    finally:
        admin.close()
    with SseClient(api, last_event_id=old) as client:
        snap = client.next()
        assert snap.event == "snapshot" and data(snap)["reset"] is True
        assert len(data(snap)["emergencies"]) == 4 and snap.id == "4"
        log.emergency(region="north")
        assert client.next().id == "5"
    # a position still in the log resumes from Kafka, not a reset
    with SseClient(api, last_event_id="3") as client:
        assert [e.id for e in client.take(2)] == ["4", "5"]


def test_websocket_resume_by_first_frame_and_query(api_settings, running_api, event_log):
    settings = api_settings()
    log = event_log(settings)
    api = running_api(settings)
    url = api.url.replace("http", "ws") + "/ws?token=dev-authority"
    with ws_connect(url) as ws:
        ws.send(json.dumps({"last_event_id": None}))
        snap = json.loads(ws.recv(timeout=15))
        assert snap["event"] == "snapshot" and snap["id"] == snap["data"]["position"]
        log.emergency(region="north")
        log.emergency(region="south")
        frames = [json.loads(ws.recv(timeout=15)) for _ in range(2)]
    assert {f["event"] for f in frames} == {"emergency_created"}
    log.emergency(region="east")
    log.emergency(region="west")
    with ws_connect(url) as ws:  # resume by first frame
        ws.send(json.dumps({"last_event_id": frames[0]["id"]}))
        resumed = [json.loads(ws.recv(timeout=15)) for _ in range(3)]
    assert_contiguous(snap["id"], [f["id"] for f in frames[:1] + resumed])
    with ws_connect(url + f"&last_event_id={resumed[0]['id']}") as ws:  # resume by query
        again = [json.loads(ws.recv(timeout=15)) for _ in range(2)]
    assert [f["id"] for f in again] == [f["id"] for f in resumed[1:]]
    # the WebSocket frames carry the same messages the SSE stream does
    with SseClient(api, last_event_id=snap["id"]) as client:
        sse = client.take(4)
    assert [(e.event, e.id, data(e)) for e in sse] == [
        (f["event"], f["id"], f["data"]) for f in frames[:1] + resumed
    ]
    assert sum(positions([sse[-1].id])[0]) == 4
