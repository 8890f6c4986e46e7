"""Fixtures of the server-level security tests: a real uvicorn server (``build_server``) on
a free loopback port, and raw-socket clients that misbehave the way a probe does.

Import the fixtures into a test module with
``from tests.security.server_fixtures import secure_api_fixture  # noqa: F401``.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from tests.api.helpers import RunningApi

# Short heartbeats and command timeouts, as in tests/api; limits small enough to reach.
FAST = {"heartbeat_s": 0.5, "command_timeout_s": 0.3, "retry_ms": 500}


@pytest.fixture(name="secure_api")
def secure_api_fixture(
    make_settings: Callable[..., Settings],
) -> Iterator[Callable[..., RunningApi]]:
    """Factory: ``secure_api(ready=True, **settings)`` starts the real API server with those
    settings (topics of its own) and returns it; every server is stopped at the end."""
    started: list[RunningApi] = []

    def factory(ready: bool = True, **overrides: object) -> RunningApi:
        settings = make_settings(**{**FAST, **overrides})
        if ready:
            ensure_topics(settings)
        api = RunningApi(settings)
        started.append(api)
        return api.start(ready=ready)

    yield factory
    for api in started:
        if api.thread.is_alive():
            api.stop()


class RawClient:
    """One TCP connection to the server, written and read by hand."""

    def __init__(self, api: RunningApi) -> None:
        self.sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
        self.received = b""

    def send(self, data: bytes) -> bool:
        """Send ``data``; False once the server has answered or closed (nothing more to do)."""
        if self.answered():
            return False
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def answered(self) -> bool:
        """Whether the server has written something (or closed), without waiting."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def response(self, timeout: float = 10.0) -> bytes:
        """Everything the server writes until it closes (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.sock], [], [], deadline - time.monotonic())
            if not readable:
                break
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            self.received += chunk
        return self.received

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(name="raw_client")
def raw_client_fixture() -> Iterator[Callable[[RunningApi], RawClient]]:
    """Factory of ``RawClient`` connections; all closed at the end."""
    clients: list[RawClient] = []

    def factory(api: RunningApi) -> RawClient:
        client = RawClient(api)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def status_and_body(raw: bytes) -> tuple[int, bytes]:
    """The status code and body of one raw HTTP/1.1 response (0 if there is none)."""
    if not raw.startswith(b"HTTP/1.1 "):
        return 0, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
