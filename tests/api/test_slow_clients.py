"""A client that stops reading costs the others nothing and holds bounded memory."""

from __future__ import annotations

import socket
import threading

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
    # the send timeout must outlast a healthy reader's stall on a loaded machine: the API,
    # the producer and the reader share this process (and its GIL), and a CI run once saw
    # the healthy client cut at 3 s, three events short of the end
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

            def read_to_last() -> None:
                try:
                    healthy.until(lambda e: data(e)["id"] == "last", limit=100_000)
                except BaseException as exc:  # reported by the assertion below
                    failures.append(exc)

            reader = threading.Thread(target=read_to_last, daemon=True)
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
            log.emergency(region="north", emergency_id="last")
            log.producer.flush()
            reader.join(60)
            got = healthy.seen[1:]
            why = (
                f"reader alive={reader.is_alive()} failed={failures!r}; hub send timeouts="
                f"{hub.timeouts}; healthy received {len(got)} of {written + 1}"
            )
            assert [e.event for e in got] == ["emergency_created"] * (written + 1), why
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
