"""The load client's raw POSTs against a real uvicorn server (the fan-out peers' app).

The peers' ``/broadcast`` answers 204 without a length, and uvicorn then sends neither
``Content-Length`` nor chunks: the first ``RawPost`` read such an answer to the end of the
connection, which uvicorn keeps open, so every broadcast POST hung until its 30 s timeout
and went out on a new connection. An answer must come back at once and the connection be
used again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import uvicorn

from infra.kafka import free_port
from tests.benchmarks.loadclient import RawPost
from tests.benchmarks.peers import encode_once_app, naive_sse_app


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    # log_config=None and no log_level: uvicorn leaves the process's logging as it is (a
    # level set here outlived the test and hid uvicorn's lines from the log-secrets test)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


def test_a_204_without_a_length_is_answered_at_once_and_the_connection_kept():
    async def run() -> None:
        for app in (naive_sse_app(), encode_once_app()):
            async with serving(app) as port:
                poster = RawPost("127.0.0.1", port, {})
                request = poster.request("/broadcast", b'{"n": 1}')
                sends: list[int] = []
                for _ in range(3):
                    status, body = await asyncio.wait_for(
                        poster.post(request, partial(sends.append, 1)), 10.0
                    )
                    assert (status, body) == (204, b"")
                assert len(sends) == 3 and len(poster._idle) == 1  # one connection, reused
                poster.close()

    asyncio.run(run())
