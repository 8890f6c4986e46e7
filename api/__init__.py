"""The live API: commands over HTTP, a read model of ``dispatch.events``, SSE and WebSocket.

    HTTP POST --> commands.py --produce--> [dispatch.commands] --> worker
                      ^ outcome (by command_id): outcomes.py        |
    readmodel.py <--consume (assign+seek, all partitions)-- [dispatch.events]
        | fold (schemas.Projection), log position, readiness
        | ring.py: recent messages, for resume
        v
    broadcast.py  one encode per event -> the same bytes appended to every bounded
        |         client buffer; one keep-alive task pings idle buffers, ends stuck writers
    feed.py (snapshot / resume from ring or Kafka / resync) -> sse.py, ws.py

``GET /api/stream`` (sse.py) is plain ASGI, dispatched ahead of Starlette's middleware
(``app.ApiApp``): per client, the request's task writes everything buffered in one
``send``, and one small task watches for the disconnect.

Build it with ``create_app(settings)``; ``dispatchwire api`` serves it with uvicorn.
"""

from api.app import create_app

__all__ = ["create_app"]
