"""``GET /api/stream``: the live feed as Server-Sent Events, served by a lean ASGI endpoint.

This is the hot path of the fan-out, so it is written against ASGI directly and reached
*before* Starlette's middleware stack (``api.app.ApiApp`` dispatches it; only requests
that will stream are taken there, every error goes through the full stack). Per client:

- the request's own task is the writer: it waits on the client's buffer and writes
  everything buffered as ONE ``send`` of the joined bytes (a burst of 50 messages is one
  write, not 50); while it waits with nothing buffered it lends the hub a function that
  writes the same way at once (``Hub.lend``, see ``api.broadcast``), so a broadcast to a
  thousand idle clients is a thousand writes in one callback, not a thousand task steps;
- one small task watches ``receive()`` for the disconnect (uvicorn's ``send`` to a closed
  connection returns quietly, so a failed send cannot tell us);
- heartbeats and the send timeout cost nothing per client: ``Hub.keep_alive`` drops the
  shared ``PING`` into idle buffers and cancels a writer whose send has been stuck for
  ``api_client_send_timeout_s``.

Messages arrive as ready bytes (``LiveMessage.sse``) and go out as they are. ``retry:``
rides in the first message's block (a block without data is not an event to browsers,
but some clients, httpx-sse, surface it as an empty one). A closing stream ends with
``: closing: <reason>``.

Why not sse-starlette's ``EventSourceResponse`` here: per connection it runs an anyio task
group with a ping task, a disconnect listener and the sender, and wraps every single send
in an anyio cancel scope for its send timeout; behind Starlette's middleware each write
also passed five ``send`` wrappers. At 10,000 clients that per-message machinery was the
whole cost of a broadcast (py-spy). sse-starlette still encodes our control lines
(``ServerSentEvent``), and its process-wide ``AppStatus`` no longer matters to us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from sse_starlette.event import ServerSentEvent
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from api.auth import READERS, Role
from api.broadcast import CLOSE, PING, SNAPSHOT, Client, LiveMessage, send_now
from api.feed import Feed, PositionNotReached
from api.http import ApiError
from api.services import Services
from schemas.events import EVENT_NAMES
from schemas.live import FRAME_EVENTS

log = logging.getLogger(__name__)

LIVE_EVENTS = frozenset((SNAPSHOT, *EVENT_NAMES, *FRAME_EVENTS))
PATH = "/api/stream"
SSE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),  # proxies (nginx) must not buffer the stream
)
# A bare comment line, without the blank line that ends an event block: clients that
# (unlike browsers) dispatch an empty event for a comment-only block (httpx-sse, once it
# has seen an id) see nothing at all.
PING_BYTES = ServerSentEvent(comment="ping").encode().removesuffix(b"\r\n")
START_FLUSH_BYTES = 64 * 1024  # a long resume backlog goes out in writes of about this
REFUSED = "dispatchwire.live_refused"  # scope key: the ApiError this request was refused with


def stream_filters(params: dict[str, str]) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """``?region=a,b`` and ``?events=x,y`` (400 for an unknown event name)."""
    regions = _csv(params.get("region"))
    events = _csv(params.get("events"))
    if events is not None:
        unknown = sorted(events - LIVE_EVENTS)
        if unknown:
            raise ApiError(
                400,
                "unknown event type in ?events=",
                [
                    {
                        "field": "events",
                        "reason": f"unknown {', '.join(unknown)}; known: "
                        f"{', '.join(sorted(LIVE_EVENTS))}",
                    }
                ],
            )
    return regions, events


def _csv(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    items = frozenset(v.strip() for v in value.split(",") if v.strip())
    return items or None


def closing_comment(reason: str) -> bytes:
    return ServerSentEvent(comment=f"closing: {reason}").encode()


class LiveStream:
    """The ASGI endpoint of ``/api/stream``.

    As a Starlette route it runs behind the middleware (that is where its errors are
    answered); ``ApiApp`` calls ``prepare`` and ``serve`` itself, ahead of the middleware,
    with ``cors`` adding the same CORS headers the middleware would.
    """

    def __init__(self, services: Services, cors: CORSMiddleware | None = None) -> None:
        self.services = services
        self.cors = cors
        self.retry = f"retry: {services.settings.retry_ms}\r\n".encode()
        self._releases: dict[Client, Callable[[], None]] = {}  # connection slots held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client, last_event_id = self.prepare(scope)
        await self.serve(scope, receive, send, client, last_event_id, direct=False)

    def prepare(self, scope: Scope) -> tuple[Client, str | None]:
        """Auth, readiness, filters and a connection slot: the client to serve, or an
        ``ApiError`` (remembered in the scope: a refused request reaches ``prepare`` twice,
        first from ``ApiApp``, then through the middleware, and is refused and counted once)."""
        refused = scope.get(REFUSED)
        if refused is not None:
            raise refused
        try:
            client, last_event_id = self._prepare(scope)
            address = scope["client"][0] if scope.get("client") else "unknown"
            self._releases[client] = self.services.live.acquire(address, "sse")
        except ApiError as exc:
            scope[REFUSED] = exc
            raise
        return client, last_event_id

    def _prepare(self, scope: Scope) -> tuple[Client, str | None]:
        services = self.services
        conn = HTTPConnection(scope)
        role = services.auth.require(conn, READERS, cookie=True, query=True)
        services.model.require_ready("the live feed")
        params = conn.query_params
        regions, events = stream_filters(dict(params))
        last_event_id = conn.headers.get("last-event-id") or params.get("last_event_id")
        client = Client(
            "sse",
            services.settings.client_queue_size,
            regions,
            events,
            redact=role is not Role.AUTHORITY,
        )
        return client, last_event_id

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Client,
        last_event_id: str | None,
        *,
        direct: bool = True,
    ) -> None:
        release = self._releases.pop(client, None)
        try:
            await self._serve(scope, receive, send, client, last_event_id, direct)
        finally:
            if release is not None:
                release()

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: Client,
        last_event_id: str | None,
        direct: bool,
    ) -> None:
        start: dict[str, Any] = {
            "type": "http.response.start",
            "status": 200,
            "headers": list(SSE_HEADERS),
        }
        if direct and self.cors is not None:
            await self.cors.send(start, send=send, request_headers=Headers(scope=scope))
        else:
            await send(start)
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        services = self.services
        gauge = services.metrics.clients.labels("sse")
        gauge.inc()
        feed = Feed(services.model, client)
        loop = asyncio.get_running_loop()
        client.writer = asyncio.current_task()
        watcher = loop.create_task(_watch_disconnect(receive, client))
        writer = _Writer(self.retry, feed, client, send, loop)
        try:
            await writer.run(last_event_id)
        except PositionNotReached as exc:
            # nothing was written yet: end the stream, the client comes back with the same id
            await send(
                {
                    "type": "http.response.body",
                    "more_body": False,
                    "body": self.retry + closing_comment(str(exc)),
                }
            )
        except asyncio.CancelledError:
            if not client.timed_out:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            # returning without ending the response makes uvicorn close the connection,
            # which is what a client that stopped reading should get
        finally:
            services.model.hub.lend(client, None)
            feed.stop()
            watcher.cancel()
            client.writer = None
            gauge.dec()


class _Writer:
    """One connection's writes: the start (snapshot or resume backlog), then the live
    messages, either from the request's task or, while that task is parked, at once from
    the hub's flush (``flush``)."""

    __slots__ = ("client", "feed", "hub", "loop", "retry", "send")

    def __init__(
        self,
        retry: bytes,
        feed: Feed,
        client: Client,
        send: Send,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.retry = retry  # ``retry:`` rides in the first message's block, then b""
        self.feed = feed
        self.client = client
        self.send = send
        self.loop = loop
        self.hub = feed.model.hub

    async def run(self, last_event_id: str | None) -> None:
        parts: list[bytes] = []
        size = 0
        async with aclosing(self.feed.start(last_event_id)) as first:
            async for message in first:
                if self.retry:
                    parts.append(self._retry())
                parts.append(message.sse)
                size += len(message.sse)
                if size >= START_FLUSH_BYTES:
                    await self._send(parts, more=True)
                    parts, size = [], 0
        if parts:
            await self._send(parts, more=True)
        await self.live()

    async def live(self) -> None:
        """After the start: the live messages, until the stream closes."""
        client = self.client
        message_class = LiveMessage
        select = self.feed.select
        while True:
            pending = client.pending
            if pending is not None:
                client.pending = None
                try:
                    await pending.finish()
                finally:
                    client.send_started = 0.0
                continue
            if not client.backlog:
                self.hub.lend(client, self.flush)
                try:
                    await client.arrival()
                finally:
                    self.hub.lend(client, None)
                continue
            parts = []
            closing = False
            for item in select(client.take_nowait()):
                if item.__class__ is message_class:
                    if self.retry:
                        parts.append(self._retry())
                    parts.append(item.sse)
                elif item is PING:
                    parts.append(PING_BYTES)
                elif item is CLOSE:
                    closing = True
            if closing:
                if client.gone:
                    return  # nobody to tell
                if client.close_reason:
                    parts.append(closing_comment(client.close_reason))
                await self._send(parts, more=False)
                return
            if parts:
                await self._send(parts, more=True)

    def flush(self, messages: list[LiveMessage]) -> None:
        """Write ``messages`` now, without a task switch (the hub's flush calls this while
        the writer is parked); a send the transport pauses is left to the writer."""
        parts = [self._retry()] if self.retry else []
        for item in self.feed.select(messages):  # type: ignore[arg-type]
            parts.append(item.sse)  # type: ignore[union-attr]  # messages in, messages out
        if not parts:
            return
        body = {"type": "http.response.body", "body": b"".join(parts), "more_body": True}
        pending = send_now(self.send, body)
        if pending is not None:
            client = self.client
            client.send_started = self.loop.time()
            client.pending = pending
            client.wake()

    def _retry(self) -> bytes:
        retry, self.retry = self.retry, b""
        return retry

    async def _send(self, parts: list[bytes], *, more: bool) -> None:
        client = self.client
        client.send_started = self.loop.time()
        try:
            body = b"".join(parts)
            await self.send({"type": "http.response.body", "body": body, "more_body": more})
        finally:
            client.send_started = 0.0


async def _watch_disconnect(receive: Receive, client: Client) -> None:
    with contextlib.suppress(OSError):
        while (await receive())["type"] != "http.disconnect":
            pass
    client.disconnected()
