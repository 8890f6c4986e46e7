"""``GET /ws``: the WebSocket fallback, the same messages as JSON text frames
``{"event", "id", "data"}`` (built once per message, like the SSE bytes).

First frame: ``{"token": "...", "last_event_id": "..."}``, sent within
``DISPATCHWIRE_API_WS_HELLO_TIMEOUT_S`` of connecting (both optional; ``null`` or no frame
means start from a snapshot). The token belongs there (or in ``Authorization`` or the
``dw_token`` cookie), not in the URL, where proxies and access logs keep it; ``?token=``
and ``?last_event_id=`` still work for old clients (the token is masked in our logs).

The Origin header must be the page's own host or in ``DISPATCHWIRE_CORS_ORIGINS``; browsers
send cookies with WebSocket handshakes from any site, so this is what stops another site
from reading the feed with a dispatcher's cookie. A ``"*"`` there admits any Origin, but
the cookie only from an Origin listed by name. A foreign Origin is refused at the handshake;
every other refusal (no or wrong token, too many connections, not ready, a bad filter or
first frame) accepts and closes with its code from ``schemas.live``, because a browser
sees a refused handshake only as 1006, without a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.auth import READERS, Role
from api.broadcast import CLOSE, Client, LiveMessage
from api.feed import Feed, PositionNotReached
from api.http import ApiError
from api.services import Services, services_of
from api.sse import stream_filters
from schemas.live import (
    BAD_REQUEST,
    FORBIDDEN,
    GOING_AWAY,
    NOT_READY,
    TOO_MANY,
    TOO_SLOW,
    UNAUTHORIZED,
    CloseCode,
)

log = logging.getLogger(__name__)

MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes


class Refusal(Exception):
    """Close the accepted socket with ``code`` and ``reason``."""

    def __init__(self, code: CloseCode, reason: str | None = None) -> None:
        super().__init__(reason or code.reason)
        self.code = code
        self.reason = reason or code.reason


def origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> tuple[bool, bool]:
    """(may connect, may authenticate by cookie) for this handshake's Origin."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True, True  # not a browser: nobody else's cookie
    if origin in allowed or urlsplit(origin).netloc == websocket.headers.get("host"):
        return True, True
    return "*" in allowed, False


async def ws_endpoint(websocket: WebSocket) -> None:
    services = services_of(websocket)
    may_connect, cookie_ok = origin_allowed(websocket, services.settings.cors_origins)
    if not may_connect:
        await websocket.send_denial_response(
            ApiError(
                403,
                "WebSocket Origin not allowed",
                [{"field": "Origin", "reason": "add it to DISPATCHWIRE_CORS_ORIGINS"}],
            ).response()
        )
        return
    release: Callable[[], None] | None = None
    refusal: Refusal | None = None
    try:
        address = websocket.client.host if websocket.client else "unknown"
        release = services.live.acquire(address, "ws")
    except ApiError as exc:
        refusal = Refusal(TOO_MANY, exc.error)
    await websocket.accept()
    try:
        if refusal is not None:
            raise refusal
        client, last_event_id = await _admit(websocket, services, cookie_ok)
        await _serve(websocket, services, client, last_event_id)
    except Refusal as exc:
        with contextlib.suppress(Exception):
            await websocket.close(code=exc.code.code, reason=_truncate(exc.reason))
    except WebSocketDisconnect:
        pass  # gone before its first frame
    finally:
        if release is not None:
            release()


async def _admit(
    websocket: WebSocket, services: Services, cookie_ok: bool
) -> tuple[Client, str | None]:
    """Filters, first frame, token, readiness: the client to serve, or a ``Refusal``."""
    settings = services.settings
    try:
        regions, events = stream_filters(dict(websocket.query_params))
    except ApiError as exc:
        raise Refusal(BAD_REQUEST, exc.fields[0]["reason"] if exc.fields else exc.error) from exc
    params = websocket.query_params
    in_handshake = "authorization" in websocket.headers or bool(params.get("token"))
    last_event_id = params.get("last_event_id")
    hello: dict[str, Any] = {}
    if last_event_id is None or not in_handshake:
        hello = await _hello(websocket, settings.api_ws_hello_timeout_s)
        if last_event_id is None:
            last_event_id = hello.get("last_event_id")
    try:
        token = hello.get("token")
        if token and not in_handshake:
            role = services.auth.require(_bearer(websocket, token), READERS)
        else:
            role = services.auth.require(websocket, READERS, cookie=cookie_ok, query=True)
    except ApiError as exc:
        code = FORBIDDEN if exc.status == 403 else UNAUTHORIZED
        raise Refusal(code, exc.error) from exc
    try:
        services.model.require_ready("the live feed")
    except ApiError as exc:
        raise Refusal(NOT_READY, exc.error) from exc
    redact = role is not Role.AUTHORITY  # a unit token: no reporter's name or phone
    return Client("ws", settings.client_queue_size, regions, events, redact), last_event_id


async def _hello(websocket: WebSocket, timeout_s: float) -> dict[str, Any]:
    """The first frame, ``{}`` if none came in time; a ``Refusal`` if it is malformed."""
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout_s)
    except TimeoutError:
        return {}
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise Refusal(BAD_REQUEST, "the first frame must be a JSON text frame")
    try:
        hello = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise Refusal(BAD_REQUEST, "the first frame is not valid JSON") from exc
    if not isinstance(hello, dict):
        raise Refusal(BAD_REQUEST, "the first frame must be a JSON object")
    for key in ("token", "last_event_id"):
        if hello.get(key) is not None and not isinstance(hello[key], str):
            raise Refusal(BAD_REQUEST, f"{key} in the first frame must be a string or null")
    return hello


def _bearer(websocket: WebSocket, token: str) -> HTTPConnection:
    """The handshake as if it carried ``Authorization: Bearer <token>`` (the role check
    reads tokens from a connection)."""
    headers = [(k, v) for k, v in websocket.scope["headers"] if k != b"authorization"]
    headers.append((b"authorization", b"Bearer " + token.encode()))
    return HTTPConnection({**websocket.scope, "headers": headers})


def _truncate(reason: str) -> str:
    return reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


async def _serve(
    websocket: WebSocket, services: Services, client: Client, last_event_id: str | None
) -> None:
    gauge = services.metrics.clients.labels("ws")
    gauge.inc()
    sender = asyncio.create_task(_send_feed(websocket, services, client, last_event_id))
    try:
        while not sender.done():
            receiver = asyncio.create_task(websocket.receive())
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver not in done:
                receiver.cancel()
                break
            if receiver.result()["type"] == "websocket.disconnect":
                break
    except WebSocketDisconnect:
        pass
    finally:
        gauge.dec()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _send_feed(
    websocket: WebSocket, services: Services, client: Client, last_event_id: str | None
) -> None:
    """The start, then every batch from the client's buffer, one frame per message.

    A send stuck for ``api_client_send_timeout_s`` is cancelled by ``Hub.keep_alive``
    (which marks the client ``timed_out``), as on the SSE stream."""
    loop = asyncio.get_running_loop()
    feed = Feed(services.model, client)
    client.writer = asyncio.current_task()
    try:
        async with contextlib.aclosing(feed.start(last_event_id)) as first:
            async for message in first:
                client.send_started = loop.time()
                await websocket.send_text(message.ws)
                client.send_started = 0.0
        while True:
            for item in feed.select(await client.take()):
                if item is CLOSE:
                    reason = client.close_reason or GOING_AWAY.reason
                    await websocket.close(code=GOING_AWAY.code, reason=_truncate(reason))
                    return
                if item.__class__ is LiveMessage:  # PING: uvicorn pings WebSockets itself
                    client.send_started = loop.time()
                    await websocket.send_text(item.ws)
                    client.send_started = 0.0
    except PositionNotReached as exc:
        log.info("closing a WebSocket client: %s", exc)
        await websocket.close(code=NOT_READY.code, reason=NOT_READY.reason)
    except asyncio.CancelledError:
        if not client.timed_out:
            raise
        log.info("closing a WebSocket client that stopped reading")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code=TOO_SLOW.code, reason=TOO_SLOW.reason), 1.0)
    finally:
        feed.stop()
        client.writer = None
