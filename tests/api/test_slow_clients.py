"""A client that stops reading costs the others nothing and holds bounded memory."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from tests.api.helpers import SseClient, assert_contiguous, data
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka


def frozen_sse_connection(port: int) -> socket.socket:
    """Opens /api/stream and never reads a byte (a tiny receive window, so the server's
    writes really block)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /api/stream?token=dev-authority HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Accept: text/event-stream\r\n\r\n"
    )
    return sock


def test_frozen_client_does_not_delay_the_others(api_settings, running_api, event_log):
    queue_size = 16
    # the send timeout outlasts a healthy reader's stall on a loaded machine (the API, the
    # producer and the reader share this process and its GIL)
    settings = api_settings(client_queue_size=queue_size, api_client_send_timeout_s=10.0)
    log = event_log(settings)
    log.autoflush = False
    api = running_api(settings)
    hub = api.services.hub
    frozen = frozen_sse_connection(api.port)
    try:
        wait_for(lambda: len(hub.clients) == 1, message="the frozen client to subscribe")
        (stuck,) = hub.clients
        with SseClient(api) as healthy:
            start = healthy.next().id
            failures: list[BaseException] = []
            expected: list[int] = []  # how many to read, set before the last write

            def read_all() -> None:
                # by count, not until "last": the events are on two partitions (north and
                # south), and the log orders each partition, not the two (CI twice saw
                # "last" arrive before the final two or three south events)
                try:
                    healthy.until(
                        lambda e: bool(expected) and len(healthy.seen) - 1 >= expected[0],
                        limit=100_000,
                    )
                except BaseException as exc:  # reported by the assertion below
                    failures.append(exc)

            reader = threading.Thread(target=read_all, daemon=True)
            reader.start()
            written = 0
            # write until the frozen client's socket and queue are full (its writes block
            # once the kernel and transport buffers are), a bounded number of rounds
            for _ in range(20):
                for n in range(200):
                    log.emergency(region=("north", "south")[n % 2], description="x" * 2000)
                log.producer.flush()
                written += 200
                if stuck.overflows:
                    break
                wait_for(lambda w=written: sum(1 for e in healthy.seen[1:]) >= w, timeout=60)
            expected.append(written + 1)
            log.emergency(region="north", emergency_id="last")
            log.producer.flush()
            reader.join(60)
            got = healthy.seen[1:]
            why = (
                f"reader alive={reader.is_alive()} failed={failures!r}; hub send timeouts="
                f"{hub.timeouts}; healthy received {len(got)} of {written + 1}"
            )
            assert [e.event for e in got] == ["emergency_created"] * (written + 1), why
            assert [data(e)["id"] for e in got].count("last") == 1
            assert len({data(e)["id"] for e in got}) == written + 1  # none twice
            assert_contiguous(start, [e.id for e in got])
            # the frozen client overflowed (its backlog dropped for a resync) instead of
            # holding every message or holding up the broadcast
            assert stuck.overflows > 0
            assert stuck.backlog <= queue_size
            # and it is disconnected once a write has been stuck for the send timeout
            wait_for(
                lambda: stuck not in hub.clients,
                timeout=30,
                message="the frozen client to be dropped",
            )
            log.emergency(region="north")
            log.producer.flush()
            assert healthy.next().event == "emergency_created"
    finally:
        frozen.close()


def frozen_ws_connection(port: int) -> socket.socket:
    """Opens /ws (the handshake read whole) and then reads nothing (a tiny receive window)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws?token=dev-authority HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    # an empty first frame (masked, as a client's must be): start from a snapshot
    sock.sendall(bytes([0x81, 0x80 | 2]) + b"\0\0\0\0" + b"{}")
    return sock


def read_frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """The server's frames (opcode, payload) until the socket closes."""
    sock.settimeout(30)
    buffer = b""

    def need(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    try:
        while True:
            first, second = need(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", need(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", need(8))[0]
            yield first & 0x0F, need(length)
    except EOFError:
        return


def test_a_websocket_client_that_stops_reading_is_closed_with_4408(
    api_settings, running_api, event_log
):
    """The documented close code for a client too slow to take its messages (schemas.live
    TOO_SLOW): when it reads again it gets what was already on its way, then 4408, and its
    next move is a reconnect."""
    from schemas.live import TOO_SLOW

    settings = api_settings(client_queue_size=16, api_client_send_timeout_s=2.0)
    log = event_log(settings)
    log.autoflush = False
    api = running_api(settings)
    hub = api.services.hub
    sock = frozen_ws_connection(api.port)
    try:
        wait_for(lambda: len(hub.clients) == 1, message="the WebSocket client to subscribe")
        for _ in range(20):  # bounded: until a write has been stuck for the send timeout
            for n in range(200):
                log.emergency(region=("north", "south")[n % 2], description="x" * 2000)
            log.producer.flush()
            if hub.timeouts or any(c.send_started for c in hub.clients):
                break
        wait_for(lambda: hub.timeouts == 1, timeout=30, message="the stuck client to be cut")
        frames = list(read_frames(sock))
    finally:
        sock.close()
    texts = [payload for opcode, payload in frames if opcode == 0x1]
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    assert texts and json.loads(texts[0])["event"] == "snapshot"
    assert len(closes) == 1, [opcode for opcode, _ in frames[-3:]]
    code, reason = struct.unpack("!H", closes[0][:2])[0], closes[0][2:].decode()
    assert (code, reason) == (TOO_SLOW.code, TOO_SLOW.reason)
