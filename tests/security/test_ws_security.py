"""Issue 11, items 3 (``/ws``), 4 (the token out of the URL) and 14 (cookie and ``"*"``):
``/ws`` refuses by closing with the codes of ``schemas.live``, which a browser can read."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from infra.kafka import free_port
from schemas.live import BAD_REQUEST, FORBIDDEN, GOING_AWAY, NOT_READY, UNAUTHORIZED
from tests.security.server_fixtures import secure_api_fixture  # noqa: F401

pytestmark = pytest.mark.kafka


def ws_url(api, query: str = "") -> str:
    return api.url.replace("http", "ws") + "/ws" + query


def close_code(ws, first_frame: str | None = None) -> tuple[int, str]:
    """Send ``first_frame`` (if any), then read until the server closes: (code, reason)."""
    if first_frame is not None:
        ws.send(first_frame)
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_deeply_nested_first_frame_is_closed_with_bad_request(secure_api):
    api = secure_api()
    with ws_connect(ws_url(api, "?token=dev-authority")) as ws:
        code, reason = close_code(ws, "[" * 20_000)  # deeper than json can recurse
    assert code == BAD_REQUEST.code, reason
    assert api.get("/healthz").status_code == 200


def test_oversized_frame_is_closed_with_message_too_big(secure_api):
    api = secure_api()
    with ws_connect(ws_url(api, "?token=dev-authority")) as ws:
        code, _ = close_code(ws, '{"last_event_id": "' + "1" * 1_000_000 + '"}')
    assert code == 1009  # not 16 MiB buffered per connection


@pytest.mark.parametrize("frame", ['{"last_event_id": 5}', "[1]", '{"token": ["x"]}'])
def test_malformed_first_frame_is_closed_with_bad_request(secure_api, frame):
    api = secure_api()
    with ws_connect(ws_url(api, "?token=dev-authority")) as ws:
        assert close_code(ws, frame)[0] == BAD_REQUEST.code


def test_token_in_the_first_frame_opens_the_feed(secure_api):
    api = secure_api()
    with ws_connect(ws_url(api)) as ws:  # nothing secret in the URL
        ws.send(json.dumps({"token": "dev-unit", "last_event_id": None}))
        assert json.loads(ws.recv(timeout=10))["event"] == "snapshot"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (None, UNAUTHORIZED),  # no first frame, no token
        ('{"token": "wrong"}', UNAUTHORIZED),
        ('{"token": "dev-reporter"}', FORBIDDEN),
    ],
)
def test_refusals_are_closes_a_browser_can_read(secure_api, frame, expected):
    api = secure_api(api_ws_hello_timeout_s=0.5)
    with ws_connect(ws_url(api)) as ws:
        code, reason = close_code(ws, frame)
    assert code == expected.code and reason


def test_not_ready_is_closed_with_its_code(secure_api):
    api = secure_api(ready=False, kafka_bootstrap=f"127.0.0.1:{free_port()}")  # no Kafka there
    with ws_connect(ws_url(api, "?token=dev-authority&last_event_id=")) as ws:
        assert close_code(ws)[0] == NOT_READY.code


def test_shutdown_closes_with_going_away(secure_api):
    api = secure_api()
    with ws_connect(ws_url(api, "?token=dev-authority&last_event_id=")) as ws:
        assert json.loads(ws.recv(timeout=10))["event"] == "snapshot"
        api.server.should_exit = True
        assert close_code(ws)[0] == GOING_AWAY.code
    api.thread.join(20)


def test_any_origin_never_brings_cookie_credentials(secure_api):
    api = secure_api(cors_origins=["*", "https://listed.example"])
    cookie = {"Cookie": "dw_token=dev-authority"}
    with ws_connect(ws_url(api), origin="https://evil.example", additional_headers=cookie) as ws:
        assert close_code(ws)[0] == UNAUTHORIZED.code
    with ws_connect(
        ws_url(api), origin="https://listed.example", additional_headers=cookie
    ) as ws:  # listed by name: its cookie counts
        assert json.loads(ws.recv(timeout=10))["event"] == "snapshot"
    with ws_connect(ws_url(api), origin="https://evil.example") as ws:  # "*" with a token
        ws.send(json.dumps({"token": "dev-authority"}))
        assert json.loads(ws.recv(timeout=10))["event"] == "snapshot"
