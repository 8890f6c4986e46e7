"""The peer designs the live API is measured against, each a server process on loopback.

``python -m tests.benchmarks.peers NAME --port P`` serves one of:

- ``socketio``: python-socketio (ASGI, uvicorn) emitting to every client straight from the
  request handler, the design dispatchwire replaces;
- ``naive_sse``: sse-starlette with one generator per client, each encoding the event to JSON
  itself;
- ``encode_once``: the best bare design: one encode per event, the same bytes appended to a
  bounded per-client buffer, one writer per client; no Kafka behind it.

Each answers ``GET /healthz`` and ``POST /broadcast`` (the body is the event's JSON data);
the SSE peers stream at ``GET /stream``, socket.io at ``/socket.io/``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

EVENT_NAME = "emergency_created"
CLIENT_BUFFER = 1_000  # events a client may fall behind before it is dropped
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def healthz(request: Request) -> Response:
    return Response(b"ok")


def socketio_app() -> Any:
    import socketio

    sio = socketio.AsyncServer(
        async_mode="asgi", cors_allowed_origins=[], logger=False, engineio_logger=False
    )

    async def broadcast(request: Request) -> Response:
        data = json.loads(await request.body())
        await sio.emit(EVENT_NAME, data)
        return Response(status_code=204)

    routes = [Route("/healthz", healthz), Route("/broadcast", broadcast, methods=["POST"])]
    return socketio.ASGIApp(sio, other_asgi_app=Starlette(routes=routes))


def naive_sse_app() -> Any:
    from sse_starlette import EventSourceResponse

    clients: set[asyncio.Queue[tuple[int, dict[str, Any]]]] = set()
    seq = 0

    async def stream(request: Request) -> EventSourceResponse:
        queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue(CLIENT_BUFFER)
        clients.add(queue)

        async def events() -> Any:
            try:
                while True:
                    n, data = await queue.get()
                    yield {"event": EVENT_NAME, "id": str(n), "data": json.dumps(data)}
            finally:
                clients.discard(queue)

        return EventSourceResponse(events())

    async def broadcast(request: Request) -> Response:
        nonlocal seq
        seq += 1
        data = json.loads(await request.body())
        for queue in list(clients):
            if queue.full():
                clients.discard(queue)  # too slow: drop it rather than grow without bound
            else:
                queue.put_nowait((seq, data))
        return Response(status_code=204)

    routes = [
        Route("/healthz", healthz),
        Route("/stream", stream),
        Route("/broadcast", broadcast, methods=["POST"]),
    ]
    return Starlette(routes=routes)


class _Client:
    """One SSE connection of the encode-once peer: a bounded buffer and a wake-up future."""

    __slots__ = ("buffer", "closed", "waiter")

    def __init__(self) -> None:
        self.buffer: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    def push(self, chunk: bytes) -> None:
        if len(self.buffer) >= CLIENT_BUFFER:
            self.close()
            return
        self.buffer.append(chunk)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def encode_once_app() -> Any:
    clients: set[_Client] = set()
    state = {"seq": 0}
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]

    async def stream(receive: Receive, send: Send) -> None:
        client = _Client()
        clients.add(client)
        loop = asyncio.get_running_loop()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            client.close()

        watcher = loop.create_task(watch_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send(
                {"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True}
            )
            while not client.closed:
                if not client.buffer:
                    client.waiter = loop.create_future()
                    await client.waiter
                    client.waiter = None
                    continue
                chunks, client.buffer = client.buffer, []
                await send(
                    {"type": "http.response.body", "body": b"".join(chunks), "more_body": True}
                )
        finally:
            clients.discard(client)
            watcher.cancel()

    async def broadcast(receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        state["seq"] += 1
        data = json.dumps(json.loads(body), separators=(",", ":"))
        chunk = f"id: {state['seq']}\nevent: {EVENT_NAME}\ndata: {data}\n\n".encode()
        for client in list(clients):
            client.push(chunk)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/stream":
            await stream(receive, send)
        elif path == "/broadcast" and scope["method"] == "POST":
            await broadcast(receive, send)
        else:
            status = 200 if path == "/healthz" else 404
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    return app


PEERS: dict[str, Callable[[], Any]] = {
    "socketio": socketio_app,
    "naive_sse": naive_sse_app,
    "encode_once": encode_once_app,
}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="leave the cyclic GC as it is (default: freeze after start-up)",
    )
    args = parser.parse_args()
    raise_fd_limit()
    app = PEERS[args.peer]()
    if not args.no_gc_freeze:
        # Everything alive after start-up is permanent; keep the cyclic GC from walking it
        # on every full collection (it dominates at 10,000 connections).
        gc.collect()
        gc.freeze()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
        loop="uvloop",
        http="httptools",
        lifespan="auto",
    )


if __name__ == "__main__":
    main()
