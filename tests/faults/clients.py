"""Recording live clients: SSE (``/api/stream``) and WebSocket (``/ws``) clients that keep
every message id and event name, reconnect when dropped (SSE with ``Last-Event-ID``, WS
with a ``{"last_event_id"}`` first frame), and never stop until told to.

All clients of a case share one asyncio loop in one thread, so a few hundred cost little.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from httpx_sse import aconnect_sse, connect_sse

from schemas.position import Position

AUTHORITY = {"Authorization": "Bearer dev-authority"}


@dataclass(frozen=True)
class Received:
    connection: int  # 0 for the first connection, +1 per reconnect
    id: str
    event: str
    reset: bool = False  # a snapshot marked as a reset
    at: float = 0.0


@dataclass
class Recording:
    name: str
    transport: str  # "sse" or "ws"
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    refused: int = 0  # connection attempts answered with an error status
    replica: int = 0  # index of the API replica (``LiveClients.urls``) it connects to now
    moves: int = 0  # times it moved to another replica after a failed connection

    @property
    def last_id(self) -> str | None:
        return self.messages[-1].id if self.messages else None


class LiveClients:
    """``sse`` SSE clients and ``ws`` WebSocket clients of the API at ``url``.

    With ``replicas`` (more API URLs), a client whose connection attempt fails or is
    refused moves to the next URL, as a load balancer without sticky sessions would send
    it: the log position it resumes from is valid on every replica."""

    def __init__(self, url: str, sse: int, ws: int, replicas: tuple[str, ...] = ()) -> None:
        self.url = url
        self.urls = [url, *replicas]
        self.recordings = [Recording(f"sse-{i}", "sse") for i in range(sse)]
        self.recordings += [Recording(f"ws-{i}", "ws") for i in range(ws)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LiveClients:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), daemon=True, name="live-clients"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), "the live clients did not stop"

    def all_reached(self, position: tuple[int, ...]) -> bool:
        """Every client has seen the records below ``position`` (or beyond)."""
        for rec in self.recordings:
            seen = Position.parse_id(rec.last_id)
            if seen is None or any(s < p for s, p in zip(seen, position, strict=False)):
                return False
        return True

    def connected(self) -> bool:
        return all(r.messages for r in self.recordings)

    async def _main(self) -> None:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, read=30.0), limits=httpx.Limits(max_connections=None)
        ) as http:
            tasks = [
                asyncio.create_task(self._sse(http, r) if r.transport == "sse" else self._ws(r))
                for r in self.recordings
            ]
            while not self._stop.is_set():
                await asyncio.sleep(0.1)  # the stop flag is a threading.Event
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _reconnect_pause(self) -> None:
        await asyncio.sleep(0.2)  # a client's reconnect delay (the server's retry: hint)

    def _url(self, rec: Recording) -> str:
        return self.urls[rec.replica % len(self.urls)]

    def _failed(self, rec: Recording) -> None:
        """A connection attempt failed or was refused: try the next replica next time."""
        if len(self.urls) > 1:
            rec.replica = (rec.replica + 1) % len(self.urls)
            rec.moves += 1

    async def _sse(self, http: httpx.AsyncClient, rec: Recording) -> None:
        while not self._stop.is_set():
            headers = dict(AUTHORITY)
            if rec.last_id is not None:
                headers["Last-Event-ID"] = rec.last_id
            connection = rec.connections
            rec.connections += 1
            served = False
            with contextlib.suppress(httpx.HTTPError, OSError):
                async with aconnect_sse(
                    http, "GET", self._url(rec) + "/api/stream", headers=headers
                ) as source:
                    if source.response.status_code != 200:
                        rec.refused += 1
                    else:
                        served = True
                        async for sse in source.aiter_sse():
                            if sse.event and sse.id:
                                rec.messages.append(
                                    _received(connection, sse.id, sse.event, sse.data)
                                )
            if not served:
                self._failed(rec)
            await self._reconnect_pause()

    async def _ws(self, rec: Recording) -> None:
        while not self._stop.is_set():
            ws_url = self._url(rec).replace("http://", "ws://") + "/ws?token=dev-authority"
            connection = rec.connections
            rec.connections += 1
            before = len(rec.messages)
            with contextlib.suppress(OSError, websockets.WebSocketException, TimeoutError):
                async with websockets.connect(ws_url, open_timeout=10, max_size=None) as ws:
                    await ws.send(json.dumps({"last_event_id": rec.last_id}))
                    async for frame in ws:
                        message = json.loads(frame)
                        rec.messages.append(
                            _received(connection, message["id"], message["event"], message["data"])
                        )
            if len(rec.messages) == before:
                self._failed(rec)
            await self._reconnect_pause()


def _received(connection: int, id: str, event: str, data: Any) -> Received:
    reset = False
    if event == "snapshot":
        body = json.loads(data) if isinstance(data, str) else data
        reset = bool(body.get("reset"))
    return Received(connection, id, event, reset, time.monotonic())


def first_message_on_resume(url: str, last_event_id: str, timeout: float = 60.0) -> Received:
    """Resume from ``last_event_id`` as early as a (re)starting API serves the stream, and
    return the first message: polled every 20 ms, so it lands while the API is still
    bootstrapping its read model if that takes more than a moment."""
    deadline = time.monotonic() + timeout
    headers = {**AUTHORITY, "Last-Event-ID": last_event_id}
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(httpx.HTTPError, OSError),
            httpx.Client(timeout=10.0) as http,
            connect_sse(http, "GET", url + "/api/stream", headers=headers) as source,
        ):
            if source.response.status_code == 200:
                for sse in source.iter_sse():
                    if sse.event and sse.id:
                        return _received(0, sse.id, sse.event, sse.data)
        time.sleep(0.02)  # the poll interval while the API is down or refusing
    raise AssertionError(f"the API served no stream within {timeout}s")
