"""``GET /ws``: the WebSocket fallback, the same messages as JSON text frames
``{"event", "id", "data"}`` (built once per message, like the SSE bytes).

Resume: ``?last_event_id=`` on the URL, or a first frame ``{"last_event_id": "..."}``
sent within ``DISPATCHWIRE_API_WS_HELLO_TIMEOUT_S`` of connecting (``null`` or no
frame means start from a snapshot). The Origin header must be the page's own host or in
``DISPATCHWIRE_CORS_ORIGINS``; browsers send cookies with WebSocket handshakes from any
site, so this is what stops another site from reading the feed with a dispatcher's cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from api.auth import READERS
from api.broadcast import CLOSE, Client, LiveMessage
from api.feed import Feed, PositionNotReached
from api.http import ApiError
from api.services import Services
from api.sse import stream_filters
from schemas.live import NOT_READY

log = logging.getLogger(__name__)


def origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser
    if origin in allowed or "*" in allowed:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


async def ws_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    settings = services.settings
    try:
        if not origin_allowed(websocket, settings.cors_origins):
            raise ApiError(403, "WebSocket Origin not allowed", [
                {"field": "Origin", "reason": "add it to DISPATCHWIRE_CORS_ORIGINS"}])
        services.auth.require(websocket, READERS, cookie=True, query=True)
        services.model.require_ready("the live feed")
        regions, events = stream_filters(dict(websocket.query_params))
    except ApiError as exc:
        await websocket.send_denial_response(exc.response())
        return
    await websocket.accept()
    last_event_id = websocket.query_params.get("last_event_id")
    if last_event_id is None:
        try:
            hello = await asyncio.wait_for(websocket.receive(), settings.api_ws_hello_timeout_s)
        except TimeoutError:
            hello = {}
        if hello.get("type") == "websocket.disconnect":
            return
        last_event_id = _hello_last_id(hello.get("text") or "")
    client = Client("ws", settings.client_queue_size, regions, events)
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


def _hello_last_id(text: str) -> str | None:
    try:
        hello = json.loads(text)
    except json.JSONDecodeError:
        return None
    value = hello.get("last_event_id") if isinstance(hello, dict) else None
    return value if isinstance(value, str) else None


async def _send_feed(websocket: WebSocket, services: Services, client: Client,
                     last_event_id: str | None) -> None:
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
                    reason = client.close_reason or "server closing"
                    await websocket.close(code=1001, reason=reason[:120])
                    return
                if item.__class__ is LiveMessage:  # PING: uvicorn pings WebSockets itself
                    client.send_started = loop.time()
                    await websocket.send_text(item.ws)  # type: ignore[union-attr]
                    client.send_started = 0.0
    except PositionNotReached as exc:
        log.info("closing a WebSocket client: %s", exc)
        await websocket.close(code=NOT_READY.code, reason=NOT_READY.reason)
    except asyncio.CancelledError:
        if not client.timed_out:
            raise
        log.info("closing a WebSocket client that stopped reading")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code=1008, reason="client too slow"), 1.0)
    finally:
        feed.stop()
        client.writer = None
