"""``create_app(settings)``: the Starlette app, its routes, middleware and lifespan.

``GET /api/stream`` is the one path taken before the middleware stack (``ApiApp``): it is
the fan-out's hot path, and each middleware layer would wrap every message it writes. Only
requests that will stream are taken there, with the CORS headers added by the same
``CORSMiddleware`` logic; anything else on that path (401, 403, 400, 503, other methods,
preflights) goes through the full stack like every other route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import views
from api import commands, tracking
from api import replay as replay_routes
from api.auth import READERS, Role
from api.http import ApiError
from api.openapi import openapi_document
from api.services import Services, services_of
from api.sse import PATH as STREAM_PATH
from api.sse import LiveStream
from api.ws import ws_endpoint
from dispatchwire.settings import Settings
from schemas.position import format_position

log = logging.getLogger(__name__)

# Pages load only our own scripts, styles and the pydeck bundle; the map draws into a
# canvas (blob:/data: images and workers); live data comes from our own /api/stream.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicy:
    """Adds a Content-Security-Policy to HTML responses that do not set their own."""

    def __init__(self, app: ASGIApp, policy: str = CONTENT_SECURITY_POLICY) -> None:
        self.app = app
        self.policy = policy.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                ctype = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if ctype.startswith(b"text/html") and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", self.policy))
                    headers.append((b"x-content-type-options", b"nosniff"))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)


class SecurityHeaders:
    """Adds ``nosniff``, a ``Referrer-Policy`` and (unless the response sets its own)
    ``Cache-Control: no-store`` to every HTTP response: JSON answers carry tokens' worth of
    data (reporters, positions) that no shared cache or later user of the browser should
    get, and a static file must never be sniffed into something executable."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in self.HEADERS if k not in names)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ApiApp(Starlette):
    """Starlette, with ``GET /api/stream`` served ahead of the middleware stack."""

    live: LiveStream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == STREAM_PATH and scope["method"] == "GET":
            scope["app"] = self
            try:
                client, last_event_id = self.live.prepare(scope)
            except ApiError:
                pass  # answered by the full stack: error handler, CORS
            else:
                await self.live.serve(scope, receive, send, client, last_event_id)
                return
        await super().__call__(scope, receive, send)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def get_state(request: Request) -> Response:
    services = services_of(request)
    role = services.auth.require(request, READERS, cookie=True)
    text = services.model.state_text(redact=role is not Role.AUTHORITY)
    return Response(text, media_type="application/json")


async def list_emergencies(request: Request) -> Response:
    services = services_of(request)
    role = services.auth.require(request, READERS, cookie=True)
    model = services.model
    return Response(
        model.emergencies_text(redact=role is not Role.AUTHORITY),
        media_type="application/json",
        headers={"X-Log-Position": model.position_id},
    )


async def list_units(request: Request) -> Response:
    services = services_of(request)
    services.auth.require(request, READERS, cookie=True)
    model = services.model
    return Response(
        model.units_text(),
        media_type="application/json",
        headers={"X-Log-Position": model.position_id},
    )


async def emergencies(request: Request) -> Response:
    if request.method == "POST":
        return await commands.report_emergency(request)
    return await list_emergencies(request)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    model = services_of(request).model
    reachable = await model.kafka_reachable()
    body: dict[str, Any] = {
        "kafka": "reachable" if reachable else "unreachable",
        "read_model": "caught up" if model.ready else "bootstrapping",
        "position": model.position_id,
    }
    if model.started_from is not None:  # the read-model checkpoint it started from
        body["checkpoint"] = format_position(model.started_from)
    if model.last_error:
        body["last_error"] = model.last_error
    ready = reachable and model.ready
    body["status"] = "ready" if ready else "not ready"
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    services = services_of(request)
    if not services.settings.metrics_open:
        services.auth.require_metrics(request)
    m = services.metrics
    return Response(m.render(), media_type=m.content_type)


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


def create_app(settings: Settings) -> ApiApp:
    """The API app for ``settings``; Kafka is reached in the lifespan, not here."""
    services = Services.build(settings)
    cors: dict[str, Any] = {
        "allow_origins": list(settings.cors_origins),
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["Authorization", "Content-Type", "Last-Event-ID"],
        "expose_headers": ["Location", "Retry-After", "X-Log-Position"],
    }
    live = LiveStream(services, cors=CORSMiddleware(_no_app, **cors))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.model.start()
        keep_alive = asyncio.get_running_loop().create_task(
            services.hub.keep_alive(settings.heartbeat_s, settings.api_client_send_timeout_s),
            name="live-keep-alive",
        )
        await asyncio.to_thread(commands.warm_region_lookup, settings)
        try:
            yield
        finally:
            services.hub.close_all("server shutting down")
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
            await services.model.stop()
            await services.bus.stop()

    routes: list[BaseRoute] = [
        Route("/api/emergencies", emergencies, methods=["GET", "POST"]),
        Route("/api/emergencies/{id}", tracking.get_emergency, methods=["GET"]),
        Route("/api/emergencies/{id}/stream", tracking.stream_emergency, methods=["GET"]),
        Route("/api/emergencies/{id}/dispatch", commands.dispatch_emergency, methods=["POST"]),
        Route("/api/emergencies/{id}/complete", commands.complete_emergency, methods=["POST"]),
        Route("/api/emergencies/{id}/cancel", commands.cancel_emergency, methods=["POST"]),
        Route("/api/units", list_units, methods=["GET"]),
        Route("/api/units/{id}/status", commands.set_unit_status, methods=["POST"]),
        Route("/api/state", get_state, methods=["GET"]),
        Route(STREAM_PATH, live, methods=["GET"]),
        WebSocketRoute("/ws", ws_endpoint),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        # /api/snapshot, /api/replay/stream: authority, by this app's roles (403 for others)
        *replay_routes.routes(settings, services.auth),
        *views.routes(settings),
    ]
    middleware = [
        Middleware(CORSMiddleware, **cors),
        Middleware(SecurityHeaders),
        Middleware(ContentSecurityPolicy),
    ]
    app = ApiApp(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={ApiError: api_error},
    )
    app.live = live
    app.state.services = services
    app.state.openapi = openapi_document(settings)
    return app


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("only CORSMiddleware.send is used, to add the stream's CORS headers")
