"""Serving the app with uvicorn, ending live streams first on shutdown.

uvicorn waits for open responses before it runs the lifespan shutdown, and a live stream
never ends by itself; so the server tells the app's hub to close every stream as soon as
shutdown starts, instead of relying on sse-starlette's process-global ``AppStatus``.

``dispatchwire api`` also tunes the cyclic garbage collector once started
(``dispatchwire.collector.tune_gc``):
everything alive after start-up (imports, the app, the street graph) is frozen out of
its reach, and the young-generation threshold is raised, so that thousands of live
connections are not walked over and over by collections that find nothing (at 10,000
connections the default thresholds made a broadcast several times slower). Reference
counting still frees almost everything at once; only cycles wait a little longer.

What the server itself enforces (issue 11): the request limits of ``api.limits`` (head
size and count, head and body time) through its HTTP protocol class; forwarded-for headers
only from ``DISPATCHWIRE_API_TRUSTED_PROXIES`` (uvicorn would believe 127.0.0.1 by default,
so anyone on the host, or a proxy that sets none, could pick a client address); and no
token in its logs: uvicorn logs every WebSocket handshake with its query string, so
``SecretRedaction`` masks ``token=`` values and the configured tokens in every record of
uvicorn's loggers (and of the handlers configured before the server is built).
"""

from __future__ import annotations

import asyncio
import logging
import re

import uvicorn
from starlette.applications import Starlette

from api.app import create_app
from api.limits import limited_http_protocol
from dispatchwire.collector import tune_gc
from dispatchwire.settings import Settings

log = logging.getLogger(__name__)


SHUTDOWN_GOODBYE_S = 1.0  # at most this long for live streams to close themselves

# Where uvicorn and the WebSocket library log request lines and handshakes.
REDACTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "websockets",
    "websockets.server",
)
QUERY_TOKEN = re.compile(r"(token=)[^&\s\"'#]+", re.IGNORECASE)
MASK = "[redacted]"


class SecretRedaction(logging.Filter):
    """Masks ``token=...`` values and every known secret in a record's message and traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        text = QUERY_TOKEN.sub(r"\1" + MASK, text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: the handler reports it, as without us
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def redact_secrets(settings: Settings) -> None:
    """Install ``SecretRedaction`` (once each) on uvicorn's loggers and the root handlers."""
    secrets = {
        s.get_secret_value()
        for s in (settings.authority_token, settings.unit_token, settings.reporter_token)
    }
    secrets.discard("")
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in REDACTED_LOGGERS]
    targets += logging.getLogger().handlers
    for target in targets:
        found = next((f for f in target.filters if isinstance(f, SecretRedaction)), None)
        if found is None:
            found = SecretRedaction()
            target.addFilter(found)
        found.secrets |= secrets


class ApiServer(uvicorn.Server):
    def __init__(
        self, app: Starlette, host: str, port: int, *, tune_gc: bool = False, **options: object
    ) -> None:
        settings: Settings = app.state.services.settings
        redact_secrets(settings)
        proxies = list(settings.api_trusted_proxies)
        options = {
            "http": limited_http_protocol(settings),
            "proxy_headers": bool(proxies),
            "forwarded_allow_ips": proxies or None,
            "ws_max_size": settings.api_ws_max_frame_bytes,
            **options,
        }
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            timeout_graceful_shutdown=5,
            log_config=None,
            access_log=False,
            backlog=4096,
            **options,  # type: ignore[arg-type]
        )
        super().__init__(config)
        self.app = app
        self.tune_gc = tune_gc

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.tune_gc and not self.should_exit:
            tune_gc()

    async def shutdown(self, sockets: list | None = None) -> None:
        hub = self.app.state.services.hub
        hub.close_all("server shutting down")
        # Let the writers say goodbye first (the SSE closing comment, the WebSocket close
        # with GOING_AWAY): uvicorn's own shutdown closes WebSockets with 1012 at once.
        writers = [c.writer for c in hub.clients if c.writer is not None]
        if writers:
            await asyncio.wait(writers, timeout=SHUTDOWN_GOODBYE_S)
        await super().shutdown(sockets)


def build_server(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    tune_gc: bool = False,
    **options: object,
) -> ApiServer:
    """The server for ``settings``; ``tune_gc`` for a process of its own (not in tests,
    where freezing would keep the test run's garbage)."""
    return ApiServer(
        create_app(settings),
        host or settings.api_host,
        settings.api_port if port is None else port,
        tune_gc=tune_gc,
        **options,
    )
