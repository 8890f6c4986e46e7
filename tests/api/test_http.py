"""Roles, validation, limits, Kafka down, and the operational endpoints."""

from __future__ import annotations

import json

import httpx
import pytest
from kafka import KafkaConsumer
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from infra.kafka import free_port
from schemas import decode_command
from tests.api.helpers import AUTHORITY, REPORTER, UNIT, SseClient, data
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

JSON = {"Content-Type": "application/json"}
REPORT = {"type": "fire", "priority": 2, "lat": 60.1699, "lon": 24.9384, "description": "smoke"}


@pytest.fixture
def api(api_settings, running_api):
    return running_api(api_settings(report_rate_per_minute=1000))


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/state", {}, 401),
        ("GET", "/api/state", {"Authorization": "Bearer wrong"}, 401),
        ("GET", "/api/state", REPORTER, 403),
        ("GET", "/api/state", UNIT, 200),
        ("GET", "/api/units", AUTHORITY, 200),
        ("GET", "/api/emergencies", REPORTER, 403),
        ("GET", "/api/stream", {}, 401),
        ("GET", "/api/stream", REPORTER, 403),
        ("POST", "/api/emergencies/x/dispatch", {}, 401),
        ("POST", "/api/emergencies/x/dispatch", UNIT, 403),
        ("POST", "/api/emergencies/x/complete", REPORTER, 403),
        ("POST", "/api/emergencies/x/cancel", AUTHORITY, 404),
        ("POST", "/api/units/u1/status", {}, 401),
        ("POST", "/api/units/u1/status", REPORTER, 403),
    ],
)
def test_roles(api, method, path, headers, status):
    kw = {"json": {"status": "AVAILABLE"}} if "status" in path else {}
    response = httpx.request(method, api.url + path, headers=headers, timeout=10, **kw)
    assert response.status_code == status, response.text
    if status >= 400:
        body = response.json()
        assert body["error"] and isinstance(body["fields"], list)


def test_stream_token_by_query_or_cookie(api):
    with SseClient(api, headers={}, params={"token": "dev-unit"}) as client:
        assert client.next().event == "snapshot"
    cookies = httpx.Cookies({"dw_token": "dev-authority"})
    response = httpx.get(api.url + "/api/state", cookies=cookies, timeout=10)
    assert response.status_code == 200
    # a cookie is not accepted for commands (another site could send it)
    response = httpx.post(api.url + "/api/emergencies/x/dispatch", cookies=cookies, timeout=10)
    assert response.status_code == 401


def test_websocket_refuses_foreign_origin_and_missing_token(api):
    url = api.url.replace("http", "ws") + "/ws"
    with pytest.raises(InvalidStatus) as denied:
        ws_connect(url + "?token=dev-authority", origin="https://evil.example")
    assert denied.value.response.status_code == 403
    # no token: accepted, then closed with 4401 (schemas.live), which a browser can read
    with ws_connect(url) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with ws_connect(
        url + "?token=dev-authority&last_event_id=", origin=api.url
    ) as ws:  # its own origin is fine
        assert json.loads(ws.recv(timeout=10))["event"] == "snapshot"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b"", 400, "body"),
        (b"[1, 2]", 422, "body"),
        (json.dumps({**REPORT, "type": "alien"}).encode(), 422, "type"),
        (json.dumps({**REPORT, "lat": 123}).encode(), 422, "lat"),
        (json.dumps({k: v for k, v in REPORT.items() if k != "lon"}).encode(), 422, "lon"),
        (json.dumps({**REPORT, "priority": 9}).encode(), 422, "priority"),
        (json.dumps({**REPORT, "surprise": 1}).encode(), 422, "surprise"),
        (json.dumps({**REPORT, "description": "x" * 20_000}).encode(), 413, "body"),
    ],
)
def test_bad_report_bodies_get_4xx_naming_the_field(api, body, status, field):
    response = httpx.post(
        api.url + "/api/emergencies",
        content=body,
        timeout=10,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert field in [f["field"] for f in response.json()["fields"]]
    assert api.get("/healthz").status_code == 200  # and the service keeps serving


def test_oversized_chunked_body_is_refused(api):
    def chunks():
        for _ in range(100):
            yield b" " * 1024

    response = httpx.post(api.url + "/api/emergencies", content=chunks(), timeout=10)
    assert response.status_code == 413


def test_valid_report_is_written_keyed_by_its_region(api):
    # no worker here: the command is written and the answer is 202 with its id
    response = api.post("/api/emergencies", json={**REPORT, "command_id": "cmd-1"})
    assert response.status_code == 202, response.text
    assert response.json()["command_id"] == "cmd-1"
    consumer = KafkaConsumer(
        api.settings.commands_topic,
        bootstrap_servers=api.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    records: list = []

    def polled() -> list:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return records

    try:
        wait_for(polled, timeout=30, message="the command on dispatch.commands")
    finally:
        consumer.close()
    (record,) = records
    command = decode_command(record.value)
    assert command.kind == "report_emergency" and command.command_id == "cmd-1"
    assert record.key == command.region.encode() and command.region.startswith("hki-")
    assert command.emergency_id == response.json()["emergency_id"]


def test_retried_command_answers_with_its_known_outcome(api_settings, running_api, event_log):
    settings = api_settings()
    log = event_log(settings)
    created = log.emergency(region="hki-sw", command_id="retry-1")
    api = running_api(settings)
    # the same report again (issue 11: another report under that id is not answered so)
    same = {"type": "medical", "priority": 2, "lat": 60.17, "lon": 24.94, "description": "test"}
    response = api.post("/api/emergencies", json={**same, "command_id": "retry-1"})
    assert response.status_code == 201
    assert response.json()["id"] == created.emergency.id


def test_report_rate_limit(api_settings, running_api):
    api = running_api(api_settings(report_rate_per_minute=2))
    statuses = [
        api.post("/api/emergencies", content=b"{}", headers=JSON).status_code for _ in range(3)
    ]
    assert statuses == [422, 422, 429]
    limited = api.post("/api/emergencies", content=b"{}")
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_kafka_unreachable_gives_503(make_settings, running_api):
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", command_timeout_s=2.0)
    api = running_api(settings, ready=False)
    response = api.post("/api/emergencies", json=REPORT)
    assert response.status_code == 503
    assert "DISPATCHWIRE_KAFKA_BOOTSTRAP" in response.json()["error"]
    assert api.get("/readyz").status_code == 503
    assert api.get("/healthz").status_code == 200
    assert api.get("/api/stream", headers=AUTHORITY).status_code == 503


def test_readyz_metrics_openapi(api, event_log):
    assert api.get("/readyz").json()["status"] == "ready"
    with SseClient(api) as client:
        client.next()
        event_log(api.settings).emergency(region="north")
        assert data(client.next())["region"] == "north"
        metrics = api.get("/metrics").text
        assert 'dispatchwire_api_clients{transport="sse"} 1.0' in metrics
        assert "dispatchwire_api_messages_fanned_out_total 1.0" in metrics
        assert "dispatchwire_api_report_to_delivery_seconds_count 1.0" in metrics
        assert "dispatchwire_api_consumer_lag" in metrics
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/api/emergencies/{id}/dispatch" in doc["paths"]
    report = doc["components"]["schemas"]["ReportRequest"]
    assert set(report["required"]) == {"type", "lat", "lon"}
    assert json.dumps(doc).count("#/$defs/") == 0
