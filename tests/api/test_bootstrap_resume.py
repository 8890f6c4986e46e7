"""Issue 10, item 3: while an API's read model is behind the log (bootstrapping after a
restart, or a replica a moment behind another), nobody is answered from the partial state:
no reset snapshot behind a client's Last-Event-ID, no 404 for an emergency further on."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from dispatchwire.settings import Settings
from schemas import encode
from schemas.events import UnitLocation
from schemas.live import NOT_READY
from tests.api.helpers import AUTHORITY, EventLog, RunningApi, SseClient, data
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

# Records before the emergency: enough that a fresh read model takes a while to fold them
# (about 4 s on this machine; the requests made during it take milliseconds).
BOOTSTRAP_RECORDS = 20_000


def write_unit_moves(settings: Settings, unit_id: str, versions: range) -> None:
    """``unit_location`` events of one unit, written in large batches (fast)."""
    raws = [
        encode(
            UnitLocation(
                event_id=f"move-{unit_id}-{v}:0",
                command_id=f"move-{v}",
                region="north",
                unit_id=unit_id,
                lat=60.17,
                lon=24.94,
                version=v,
            )
        )
        for v in versions
    ]

    async def produce() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", max_batch_size=1 << 20
        )
        await producer.start()
        try:
            sent = []
            batch = producer.create_batch()
            for raw in raws:
                if batch.append(key=b"north", value=raw, timestamp=None) is None:
                    sent.append(
                        await producer.send_batch(batch, settings.events_topic, partition=0)
                    )
                    batch = producer.create_batch()
                    batch.append(key=b"north", value=raw, timestamp=None)
            sent.append(await producer.send_batch(batch, settings.events_topic, partition=0))
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(produce())


def on_api_loop(api: RunningApi, action: Callable[[AIOKafkaConsumer], None]) -> None:
    """Run ``action`` on the API's read-model consumer, in the API's own event loop."""
    model = api.services.model
    assert model._task is not None and model._consumer is not None

    async def run() -> None:
        assert model._consumer is not None
        action(model._consumer)

    asyncio.run_coroutine_threadsafe(run(), model._task.get_loop()).result(10)


def open_stream(api: RunningApi, last_event_id: str) -> tuple[httpx.Response, str]:
    """The answer to a stream request resuming at ``last_event_id``, and its body (an
    error's JSON, or a stream's first write: a snapshot, a backlog or a heartbeat), without
    waiting for a stream to end."""
    with httpx.stream(
        "GET",
        api.url + "/api/stream",
        timeout=15,
        headers={**AUTHORITY, "Last-Event-ID": last_event_id},
    ) as response:
        if response.status_code != 200:
            return response, response.read().decode()
        return response, next(response.iter_text())


def test_during_a_bootstrap_nothing_is_answered_from_the_partial_state(
    api_settings, running_api, event_log
):
    # checkpoints off: the restarted API folds the whole log (a stopping API would write
    # one at the end, and the restart would have no partial state to show)
    settings = api_settings(partitions=1, readmodel_checkpoint_s=0)
    log = event_log(settings)
    log.unit(region="north", unit_id="u-busy")
    write_unit_moves(settings, "u-busy", range(2, BOOTSTRAP_RECORDS + 2))
    created = log.emergency(region="north")  # the last record: a partial model lacks it
    late_unit = log.unit(region="north", unit_id="u-late")
    end = BOOTSTRAP_RECORDS + 3

    first = running_api(settings)
    with SseClient(first) as client:
        snap = client.next()
    assert snap.id == str(end) and len(data(snap)["emergencies"]) == 1
    first.stop()

    second = running_api(settings, ready=False)  # the restarted API
    model = second.services.model
    wait_for(
        lambda: model.started and model.position[0] > 0,
        timeout=30,
        interval=0.005,
        message="the read model to start folding",
    )
    stream, stream_body = open_stream(second, snap.id)
    dispatch = second.post(f"/api/emergencies/{created.emergency.id}/dispatch", headers=AUTHORITY)
    status = second.post(
        f"/api/units/{late_unit.unit_id}/status",
        headers=AUTHORITY,
        json={"status": "OUT_OF_SERVICE"},
    )
    ws_url = second.url.replace("http", "ws") + "/ws?token=dev-authority"
    ws_outcome = _ws_first(ws_url, snap.id)
    during = model.position[0]
    assert not model.ready, (
        f"the bootstrap ended before the requests were made (at {during}); "
        "BOOTSTRAP_RECORDS is too small for this machine"
    )

    # the stream resuming ahead of the partial model: refused until ready, no reset behind
    assert stream.status_code == 503, stream_body[:300]
    assert int(stream.headers["retry-after"]) >= 1
    assert "not ready" in json.loads(stream_body)["error"]
    # commands for entities the partial model does not know yet: 503, not 404
    for answer in (dispatch, status):
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
    assert ws_outcome in ("refused 503", "closed 4503"), ws_outcome

    # the client retries as told, and resumes exactly after its id: no snapshot, no gap,
    # no duplicate
    wait_for(
        lambda: open_stream(second, snap.id)[0].status_code != 503,
        timeout=60,
        interval=0.5,
        message="the read model to be ready",
    )
    with SseClient(second, last_event_id=snap.id) as client:
        after = log.emergency(region="north")
        got = client.next()
    assert got.event == "emergency_created" and got.id == str(end + 1)
    assert data(got)["id"] == after.emergency.id
    assert second.get(f"/api/emergencies/{created.emergency.id}").status_code == 200


def _ws_first(url: str, last_event_id: str) -> str:
    """What a WebSocket client resuming at ``last_event_id`` gets first."""
    try:
        with ws_connect(url) as ws:
            ws.send(json.dumps({"last_event_id": last_event_id}))
            frame = json.loads(ws.recv(timeout=15))
            return f"frame {frame['event']} at {frame['id']}"
    except InvalidStatus as exc:
        return f"refused {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"


@pytest.fixture
def two_replicas(api_settings, running_api, event_log):
    """Two APIs on one log; the second's read-model consumer can be paused, so it is
    behind the first the way a slower replica is."""
    settings = api_settings(partitions=1, api_resume_wait_s=3.0)
    log = event_log(settings)
    log.emergency(region="north")
    ahead, behind = running_api(settings), running_api(settings)
    tp = TopicPartition(settings.events_topic, 0)
    on_api_loop(behind, lambda consumer: consumer.pause(tp))
    return log, ahead, behind, tp


def _follow(api: RunningApi, log: EventLog, n: int) -> str:
    with SseClient(api) as client:
        start = client.next()
        for _ in range(n):
            log.emergency(region="north", description=f"seen by {uuid.uuid4().hex[:6]}")
        return client.take(n)[-1].id if n else start.id


def test_a_resume_id_ahead_of_this_replica_waits_for_it(two_replicas):
    log, ahead, behind, tp = two_replicas
    last_id = _follow(ahead, log, 3)  # the client followed the replica that is ahead
    assert last_id == "4" and behind.services.model.position == (1,)
    results: dict[str, object] = {}

    def reconnect() -> None:  # to the replica that is behind
        with SseClient(behind, last_event_id=last_id) as client:
            results["first"] = client.next()

    reader = threading.Thread(target=reconnect)
    reader.start()
    # the feed waits on the read model's progress (before the fix: a reset snapshot at 1)
    wait_for(
        lambda: "first" in results or getattr(behind.services.model, "_progress", None) is not None,
        timeout=15,
        message="the resuming client to wait for the replica",
    )
    on_api_loop(behind, lambda consumer: consumer.resume(tp))
    wait_for(
        lambda: behind.services.model.position == (4,),
        timeout=15,
        message="the replica to catch up",
    )
    after = log.emergency(region="north")
    reader.join(15)
    first = results["first"]
    assert first.event == "emergency_created", (first.event, first.data[:200])
    assert first.id == "5" and data(first)["id"] == after.emergency.id


def test_a_replica_that_stays_behind_closes_the_stream_without_a_reset(two_replicas):
    log, ahead, behind, _ = two_replicas
    last_id = _follow(ahead, log, 2)
    with httpx.stream(
        "GET",
        behind.url + "/api/stream",
        timeout=15,
        headers={**AUTHORITY, "Last-Event-ID": last_id},
    ) as response:
        assert response.status_code == 200
        body = ""
        for chunk in response.iter_text():  # the stream ends after api_resume_wait_s
            body += chunk
            if "event:" in body:
                break
    assert "snapshot" not in body and "event:" not in body
    assert body.startswith("retry: ") and ": closing: the read model has not reached 3" in body
    # the same on the WebSocket: closed as "not ready" (back off, come back with the id)
    ws_url = behind.url.replace("http", "ws") + "/ws?token=dev-authority"
    assert _ws_first(ws_url, last_id) == f"closed {NOT_READY.code}"
    # an id beyond the end of the log is not a position of this log: a reset, at once
    with SseClient(behind, last_event_id="99") as client:
        snap = client.next()
    assert snap.event == "snapshot" and data(snap)["reset"] is True
