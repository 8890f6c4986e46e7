"""``/api/stream`` on the wire: it is served ahead of the middleware stack (``ApiApp``),
so its headers, CORS, heartbeats, retry hint and disconnect handling are its own."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import AUTHORITY
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

DASHBOARD = "https://dash.example"


@pytest.fixture
def api(api_settings, running_api):
    return running_api(api_settings(cors_origins=(DASHBOARD,)))


def test_stream_headers_cors_retry_snapshot_and_heartbeats(api):
    with (
        httpx.Client(timeout=15) as http,
        http.stream(
            "GET", api.url + "/api/stream", headers={**AUTHORITY, "Origin": DASHBOARD}
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-accel-buffering"] == "no"
        # the same CORS headers CORSMiddleware gives every other route
        assert r.headers["access-control-allow-origin"] == DASHBOARD
        assert "X-Log-Position" in r.headers["access-control-expose-headers"]
        lines = r.iter_lines()
        assert next(lines) == "retry: 500"  # in the first block, before the snapshot's id
        assert next(lines).startswith("id: ")
        assert next(lines) == "event: snapshot"
        # heartbeat_s=0.5 in tests: comment lines keep arriving on an idle stream
        pings = 0
        for line in lines:
            if line == ": ping":
                pings += 1
                if pings == 2:
                    break
            else:
                assert line == "" or line.startswith("data: "), line


def test_foreign_origin_gets_no_cors_grant(api):
    with (
        httpx.Client(timeout=15) as http,
        http.stream(
            "GET", api.url + "/api/stream", headers={**AUTHORITY, "Origin": "https://evil.example"}
        ) as r,
    ):
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers
        assert "Origin" in r.headers["vary"]


def test_errors_and_preflight_on_the_stream_path_go_through_the_full_stack(api):
    denied = api.get("/api/stream", headers={"Origin": DASHBOARD})
    assert denied.status_code == 401 and denied.json()["fields"][0]["field"] == "Authorization"
    assert denied.headers["access-control-allow-origin"] == DASHBOARD
    preflight = httpx.options(
        api.url + "/api/stream",
        timeout=10,
        headers={
            "Origin": DASHBOARD,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == DASHBOARD
    assert api.post("/api/stream", headers=AUTHORITY).status_code == 405
    head = httpx.head(api.url + "/api/stream", headers=AUTHORITY, timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/event-stream")


def test_a_client_that_disconnects_is_unsubscribed_at_once(api):
    hub = api.services.hub
    with httpx.Client(timeout=15) as http:
        for _ in range(3):
            with http.stream("GET", api.url + "/api/stream", headers=AUTHORITY) as r:
                lines = r.iter_lines()  # kept: a dropped line iterator closes the response
                assert next(lines).startswith("retry:")
                wait_for(lambda: len(hub.clients) == 1, message="the client to subscribe")
                assert next(lines).startswith("id: ")  # still streaming
            # well before any heartbeat or send timeout could notice
            wait_for(lambda: not hub.clients, timeout=5, message="the client to be dropped")
    metrics = api.get("/metrics").text
    assert 'dispatchwire_api_clients{transport="sse"} 0.0' in metrics
