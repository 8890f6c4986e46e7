"""A real server for the pages whose live feed only ever closes its WebSocket with one code.

The pages (``views.routes``) under uvicorn on loopback, with a ``/ws`` that accepts, reads
the page's first frame, and closes with ``close_code``; ``/api/stream`` answers 503, so the
pages go to the WebSocket at once; ``/api/state`` is an empty state, for the polling
fallback. It stands in for the API only where the test is about the page's reaction to a
close code; the real API's codes are tested against the API itself.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

import views
from dispatchwire.settings import Settings
from infra.kafka import free_port
from tests.conftest import wait_for

HELLO_WAIT_S = 30


@dataclass
class Connection:
    token: str | None  # from ?token= or the first frame, whichever the page used
    hello: bool  # whether the page's first frame came before the site closed


@dataclass
class ClosingSite:
    settings: Settings
    close_code: int = 1000
    connections: list[Connection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[
                Route("/api/stream", self._stream),
                Route("/api/state", self._state),
                WebSocketRoute("/ws", self._ws),
                *views.routes(self.settings),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="closing-site", daemon=True)

    async def _stream(self, request: Request) -> JSONResponse:
        return JSONResponse({"error": "no SSE here"}, status_code=503)

    async def _state(self, request: Request) -> JSONResponse:
        return JSONResponse({"emergencies": [], "units": [], "position": {}})

    async def _ws(self, websocket: WebSocket) -> None:
        token = websocket.query_params.get("token")
        hello = False
        await websocket.accept()
        try:
            # The page sends its hello as soon as the socket opens, but on a loaded two-core
            # machine that can take seconds: a 2 s wait once closed before it came and
            # recorded no token (CI, stop 30). The bound only keeps a broken page from
            # holding the test.
            with anyio.move_on_after(HELLO_WAIT_S):
                first = json.loads(await websocket.receive_text())
                hello = True
                token = token or (first.get("token") if isinstance(first, dict) else None)
        except (WebSocketDisconnect, ValueError):
            pass
        self.connections.append(Connection(token, hello))
        await websocket.close(code=self.close_code, reason="closed by the test")

    def start(self) -> ClosingSite:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=20, message="the test server")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
