"""``GET /api/stream``: the live feed as Server-Sent Events (sse-starlette).

Messages arrive as ready bytes (``LiveMessage.sse``) and go out as they are: sse-starlette
passes ``bytes`` through untouched, so no per-client encoding happens here. Heartbeats
are sse-starlette's comment pings; ``retry:`` is sent once, with the first message.

sse-starlette keeps shutdown state in its module-level ``AppStatus``; we do not rely on
it. Each app ends its own streams on shutdown (``Hub.close_all`` from ``api.server``),
and a stale ``AppStatus.should_exit`` left by an earlier server in the same process is
cleared when an app starts (see ``api.app``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request

from api.auth import READERS
from api.broadcast import SNAPSHOT, Client
from api.feed import live_feed
from api.http import ApiError
from api.services import Services
from schemas.events import EVENT_NAMES

LIVE_EVENTS = frozenset((SNAPSHOT, *EVENT_NAMES))


class Heartbeat(ServerSentEvent):
    """A bare comment line. Without the blank line that ends an event block, so clients
    that (unlike browsers) dispatch an empty event for a comment-only block (httpx-sse,
    once it has seen an id) see nothing at all."""

    def encode(self) -> bytes:
        return b": ping\r\n"


def stream_filters(params: dict[str, str]) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """``?region=a,b`` and ``?events=x,y`` (400 for an unknown event name)."""
    regions = _csv(params.get("region"))
    events = _csv(params.get("events"))
    if events is not None:
        unknown = sorted(events - LIVE_EVENTS)
        if unknown:
            raise ApiError(400, "unknown event type in ?events=", [
                {"field": "events", "reason": f"unknown {', '.join(unknown)}; known: "
                 f"{', '.join(sorted(LIVE_EVENTS))}"}])
    return regions, events


def _csv(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    items = frozenset(v.strip() for v in value.split(",") if v.strip())
    return items or None


async def stream(request: Request) -> EventSourceResponse:
    services: Services = request.app.state.services
    services.auth.require(request, READERS, cookie=True, query=True)
    if not services.model.started:
        raise ApiError(503, "the live feed is not ready: the read model has not reached "
                       f"Kafka at {services.settings.kafka_bootstrap} yet")
    regions, events = stream_filters(dict(request.query_params))
    last_event_id = request.headers.get("last-event-id") or request.query_params.get(
        "last_event_id")
    client = Client("sse", services.settings.client_queue_size, regions, events)

    async def body() -> AsyncIterator[bytes]:
        gauge = services.metrics.clients.labels("sse")
        gauge.inc()
        try:
            # retry: rides in the first message's block: a block without data is not an
            # event to browsers, but some clients (httpx-sse) surface it as an empty one
            retry = f"retry: {services.settings.retry_ms}\r\n".encode()
            async with aclosing(live_feed(services.model, client, last_event_id)) as feed:
                async for message in feed:
                    if retry:
                        yield retry + message.sse
                        retry = b""
                    else:
                        yield message.sse
            if client.close_reason:
                yield f": closing: {client.close_reason}\r\n\r\n".encode()
        finally:
            gauge.dec()

    return EventSourceResponse(
        body(),
        ping=services.settings.heartbeat_s,
        ping_message_factory=Heartbeat,
        send_timeout=services.settings.api_client_send_timeout_s,
        # when sse-starlette sees the server exiting, give our own close (the hub ends
        # every feed first, see api.server) time to finish the response cleanly
        shutdown_grace_period=2.0,
    )
