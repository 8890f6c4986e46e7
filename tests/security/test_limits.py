"""Issue 11, items 1, 2, 9 and 10: request head limits, slow requests, forwarded-for and
the report rate limit, and caps on live connections. All against the real server on a free
loopback port, driven by raw sockets, httpx and ``websockets``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from kafka import KafkaProducer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from schemas import encode
from tests.analytics.story import Story
from tests.api.helpers import AUTHORITY, UNIT
from tests.conftest import wait_for
from tests.security.server_fixtures import (  # noqa: F401
    raw_client_fixture,
    secure_api_fixture,
    status_and_body,
)

pytestmark = pytest.mark.kafka

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
REPORT = {"type": "fire", "priority": 2, "lat": 60.1699, "lon": 24.9384, "description": "smoke"}


def error_fields(body: bytes) -> list[str]:
    parsed = json.loads(body)
    assert parsed["error"]
    return [f["field"] for f in parsed["fields"]]


# --- item 1: request heads ------------------------------------------------------------------


def test_header_line_that_never_ends_is_cut_off_with_431(secure_api, raw_client):
    api = secure_api(ready=False, api_max_header_bytes=16_384)
    client = raw_client(api)
    client.send(HEAD + b"X-Grows: ")
    sent = 0
    while sent < 4 * 1024 * 1024 and client.send(b"a" * 8192):  # the probe's 4 MiB line
        sent += 8192
    status, body = status_and_body(client.response())
    assert status == 431, f"after {sent} bytes of one header line: {client.received[:200]!r}"
    assert error_fields(body) == ["headers"]
    # refused before the probe's 4 MiB were all sent (what was sent after the refusal sits in
    # socket buffers: the server stops reading at its limit plus one received chunk)
    assert sent < 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (b"X-Big: " + b"a" * 65_536 + b"\r\n", "DISPATCHWIRE_API_MAX_HEADER_BYTES"),
        (b"".join(b"X-H%d: v\r\n" % i for i in range(1_000)), "DISPATCHWIRE_API_MAX_HEADERS"),
    ],
)
def test_finished_oversized_head_is_431_naming_the_limit(secure_api, raw_client, headers, reason):
    api = secure_api(ready=False)
    client = raw_client(api)
    client.send(HEAD + headers + b"\r\n")
    status, body = status_and_body(client.response())
    assert status == 431, client.received[:200]
    assert reason in json.loads(body)["fields"][0]["reason"]
    assert api.get("/healthz").status_code == 200  # the server keeps serving


def test_ordinary_heads_are_served(secure_api):
    api = secure_api(ready=False)
    headers = {f"X-H{i}": "v" * 100 for i in range(60)}  # 60 headers, ~7 KiB
    assert api.get("/healthz", headers=headers).status_code == 200


# --- item 2: slow requests ------------------------------------------------------------------

SLOW = {"api_head_timeout_s": 1.0, "api_body_timeout_s": 1.0}


def test_header_line_every_little_while_gets_408(secure_api, raw_client):
    api = secure_api(ready=False, **SLOW)
    client = raw_client(api)
    client.send(HEAD)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.send(b"X-Slow: 1\r\n"):
        time.sleep(0.2)  # the slowloris pace: a header line now and then, never the end
    status, body = status_and_body(client.response(timeout=5))
    assert status == 408, client.received[:200]
    assert error_fields(body) == ["headers"]


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: 127"])
def test_silent_or_half_sent_head_gets_408(secure_api, raw_client, sent):
    api = secure_api(ready=False, **SLOW)
    client = raw_client(api)
    client.send(sent)
    status, body = status_and_body(client.response(timeout=10))
    assert status == 408, client.received[:200]
    assert "DISPATCHWIRE_API_HEAD_TIMEOUT_S" in body.decode()


def test_body_shorter_than_its_content_length_gets_408(secure_api, raw_client):
    api = secure_api(**SLOW)
    client = raw_client(api)
    client.send(
        b"POST /api/emergencies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"type":'
    )
    status, body = status_and_body(client.response(timeout=10))
    assert status == 408, client.received[:200]
    assert error_fields(body) == ["body"]


def test_live_stream_outlives_the_request_time_limits(secure_api):
    """The head and body timers end with the request; a stream runs on."""
    api = secure_api(**SLOW)
    lines = 0
    with httpx.stream("GET", api.url + "/api/stream", headers=AUTHORITY, timeout=10) as stream:
        assert stream.status_code == 200
        started = time.monotonic()
        for _ in stream.iter_lines():  # heartbeats every 0.5 s
            lines += 1
            if time.monotonic() - started > 3 * SLOW["api_body_timeout_s"]:
                break
    assert time.monotonic() - started > 3 * SLOW["api_body_timeout_s"] and lines > 2


# --- item 9: forwarded-for and the report rate limit -----------------------------------------


def report(api, headers=None):
    return httpx.post(api.url + "/api/emergencies", json=REPORT, headers=headers or {}, timeout=15)


def test_forwarded_for_from_an_untrusted_peer_does_not_pick_the_bucket(secure_api):
    api = secure_api(report_rate_per_minute=2)
    statuses = [report(api, {"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(3)]
    assert statuses[:2] == [202, 202] and statuses[2] == 429, statuses


def test_forwarded_for_from_a_trusted_proxy_is_the_client(secure_api):
    api = secure_api(report_rate_per_minute=1, api_trusted_proxies=["127.0.0.1"])
    assert report(api, {"X-Forwarded-For": "203.0.113.1"}).status_code == 202
    assert report(api, {"X-Forwarded-For": "203.0.113.2"}).status_code == 202
    assert report(api, {"X-Forwarded-For": "203.0.113.1"}).status_code == 429


@pytest.mark.parametrize("headers", [AUTHORITY, UNIT])
def test_authenticated_roles_are_not_rate_limited(secure_api, headers):
    api = secure_api(report_rate_per_minute=1)
    assert [report(api, headers).status_code for _ in range(3)] == [202, 202, 202]
    assert [report(api).status_code for _ in range(2)] == [202, 429]  # anonymous still is


# --- item 10: live connection caps -----------------------------------------------------------


def refused_metric(api, transport: str, cap: str) -> float:
    text = api.get("/metrics").text
    pattern = (
        r"dispatchwire_api_live_connections_refused_total"
        rf'\{{cap="{cap}",transport="{transport}"\}} (\S+)'
    )
    match = re.search(pattern, text)
    assert match, text
    return float(match.group(1))


def open_stream(api, source: str = "127.0.0.1") -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10)
    response = client.send(
        client.build_request("GET", api.url + "/api/stream", headers=AUTHORITY), stream=True
    )
    return client, response


def opened_again(
    open_one: Callable[[], tuple[httpx.Client, httpx.Response]], what: str
) -> tuple[httpx.Client, httpx.Response]:
    """Open until the server accepts: a closed connection's slot is free a moment after."""
    opened: list[tuple[httpx.Client, httpx.Response]] = []

    def accepted() -> bool:
        client, response = open_one()
        if response.status_code == 200:
            opened.append((client, response))
            return True
        response.close()
        client.close()
        return False

    wait_for(accepted, timeout=10, message=f"the closed {what}'s slot to be free")
    return opened[0]


def test_sse_connections_are_capped_per_address_and_in_total(secure_api):
    api = secure_api(api_max_live_per_address=2, api_max_live_total=3)
    held = [open_stream(api) for _ in range(2)]
    try:
        assert [r.status_code for _, r in held] == [200, 200]
        _, refused = open_stream(api)
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        refused.read()
        assert error_fields(refused.content) == ["connections"]
        held.append(open_stream(api, "127.0.0.2"))  # another address: the third in all
        assert held[-1][1].status_code == 200
        _, full = open_stream(api, "127.0.0.3")
        assert full.status_code == 503 and full.headers["Retry-After"]
        assert refused_metric(api, "sse", "per_address") == 1
        assert refused_metric(api, "sse", "total") == 1
        client, response = held.pop(0)  # one closes: its slot is free again
        response.close()
        client.close()
        held.append(opened_again(lambda: open_stream(api), "stream"))
    finally:
        for client, response in held:
            response.close()
            client.close()


def test_websocket_over_the_cap_is_closed_with_its_code(secure_api):
    api = secure_api(api_max_live_per_address=1)
    url = api.url.replace("http", "ws") + "/ws?token=dev-authority&last_event_id="
    with ws_connect(url) as first:
        assert json.loads(first.recv(timeout=10))["event"] == "snapshot"
        with ws_connect(url) as second, pytest.raises(ConnectionClosed) as closed:
            second.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert "per address" in closed.value.rcvd.reason or "connections" in closed.value.rcvd.reason
    assert refused_metric(api, "ws", "per_address") == 1


def test_body_timeout_after_an_early_answer_only_closes(secure_api, raw_client):
    """The app may answer before the body is in (413 here); the body timer then ends the
    connection without a second, unasked-for answer."""
    api = secure_api(ready=False, **SLOW)
    client = raw_client(api)
    client.send(
        b"POST /api/emergencies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    )
    raw = client.response(timeout=10)
    assert status_and_body(raw)[0] == 413, raw[:200]
    assert raw.count(b"HTTP/1.1 ") == 1, raw


def test_replay_streams_are_capped_in_all(secure_api):
    """A replay stream holds a Kafka consumer and a fold of its own: a few at once, then 503
    naming the setting; a stream that ends gives its slot back."""
    api = secure_api(api_max_replays=1)
    settings = api.settings
    now_ms = int(time.time() * 1000)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        # two events a minute apart in log time: a replay at speed 1 stays open between them
        story = Story()
        for n in range(2):
            story.unit(f"u-cap-{n}", "ambulance", "hki-nw", datetime.now(UTC), 60.17, 24.94)
        for event, stamp in zip(story.events, (now_ms - 120_000, now_ms - 60_000), strict=True):
            producer.send(
                settings.events_topic, key=b"hki-nw", value=encode(event), timestamp_ms=stamp
            )
        producer.flush()
    finally:
        producer.close()
    path = "/api/replay/stream?speed=1&token=dev-authority"

    def open_replay() -> tuple[httpx.Client, httpx.Response]:
        client = httpx.Client(timeout=10)
        return client, client.send(client.build_request("GET", api.url + path), stream=True)

    first = open_replay()
    try:
        assert first[1].status_code == 200
        lines = first[1].iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: snapshot"
        client, refused = open_replay()
        refused.read()
        client.close()
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert error_fields(refused.content) == ["connections"]
        assert "DISPATCHWIRE_API_MAX_REPLAYS" in refused.text
    finally:
        first[1].close()
        first[0].close()
    client, response = opened_again(open_replay, "replay")
    response.close()
    client.close()
