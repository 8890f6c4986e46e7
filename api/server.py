"""Serving the app with uvicorn, ending live streams first on shutdown.

uvicorn waits for open responses before it runs the lifespan shutdown, and a live stream
never ends by itself; so the server tells the app's hub to close every stream as soon as
shutdown starts, instead of relying on sse-starlette's process-global ``AppStatus``.
"""

from __future__ import annotations

import logging

import uvicorn
from starlette.applications import Starlette

from api.app import create_app
from dispatchwire.settings import Settings

log = logging.getLogger(__name__)


class ApiServer(uvicorn.Server):
    def __init__(self, app: Starlette, host: str, port: int, **options: object) -> None:
        config = uvicorn.Config(app, host=host, port=port, lifespan="on",
                                timeout_graceful_shutdown=5, log_config=None,
                                access_log=False, **options)  # type: ignore[arg-type]
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self.app.state.services.hub.close_all("server shutting down")
        await super().shutdown(sockets)


def build_server(settings: Settings, host: str | None = None, port: int | None = None,
                 **options: object) -> ApiServer:
    return ApiServer(create_app(settings), host or settings.api_host,
                     settings.api_port if port is None else port, **options)
