"""Writing a broadcast without a task switch per client (``Hub.lend``, ``Hub.flush``).

No broker needed: the hub, the SSE writer (``api.sse._Writer``) and an ASGI ``send`` whose
transport can be paused the way uvicorn's is (its ``send`` awaits a drain event).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from api.broadcast import Client, Hub, LiveMessage, build_message
from api.feed import Feed
from api.metrics import ApiMetrics
from api.readmodel import ReadModel
from api.sse import _Writer
from dispatchwire.settings import Settings


def message(n: int) -> LiveMessage:
    return build_message(
        "emergency_created", f"0:{n + 1}", f'{{"n":{n}}}', partition=0, offset=n, region="a"
    )


class PausableSend:
    """An ASGI ``send`` that, like uvicorn's, awaits its transport's drain while paused."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()

    async def __call__(self, event: dict) -> None:
        if not self.writable.is_set():
            await self.writable.wait()
        self.bodies.append(event.get("body", b""))


async def turns_until(done: Callable[[], bool], turns: int = 10) -> None:
    """Give the loop up to ``turns`` turns (a write's steps), until ``done()``."""
    for _ in range(turns):
        await asyncio.sleep(0)
        if done():
            return


def writer_for(hub: Hub, client: Client, send: PausableSend) -> _Writer:
    model = ReadModel(Settings(), hub, ApiMetrics())
    feed = Feed(model, client)
    hub.subscribe(client)
    return _Writer(b"", feed, client, send, asyncio.get_running_loop())  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def parked_writer() -> AsyncIterator[tuple[Hub, Client, PausableSend]]:
    """One SSE writer past its start, parked on its empty buffer; cancelled at the end."""
    hub, client, send = Hub(), Client("sse", 16), PausableSend()
    task = asyncio.get_running_loop().create_task(writer_for(hub, client, send).live())
    await asyncio.sleep(0)
    try:
        yield hub, client, send
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_broadcast_to_parked_writers_is_written_in_one_callback_without_waking_them():
    async def run() -> None:
        hub = Hub()
        clients = [Client("sse", 16) for _ in range(50)]
        sends = [PausableSend() for _ in clients]
        tasks = []
        for client, send in zip(clients, sends, strict=True):
            writer = writer_for(hub, client, send)
            tasks.append(asyncio.get_running_loop().create_task(writer.live()))
        await asyncio.sleep(0)  # every writer is now parked on its empty buffer
        assert all(c.flusher is not None for c in clients)
        woken = [c._waiter for c in clients]

        burst = [message(n) for n in range(3)]
        for m in burst:  # one task step publishes a burst (the read model's fetched batch)
            hub.publish(m)
        assert all(send.bodies == [] for send in sends)  # nothing written inside publish
        await asyncio.sleep(0)  # the flush callback runs

        expected = b"".join(m.sse for m in burst)
        assert [send.bodies for send in sends] == [[expected]] * len(sends)  # one write each
        # no writer task was woken for it: each still waits on the same future
        assert [c._waiter for c in clients] == woken
        assert not any(w is None or w.done() for w in woken)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


def test_a_paused_write_is_finished_by_the_writer_before_anything_newer():
    async def run() -> None:
        async with parked_writer() as (hub, client, send):
            send.writable.clear()  # the client stopped reading: the transport pauses
            hub.publish(message(0))
            await asyncio.sleep(0)  # the flush starts the write; it cannot finish
            assert client.pending is not None and client.send_started > 0
            hub.publish(message(1))  # buffered behind the paused write, not written past it
            client.ping()
            await asyncio.sleep(0)
            assert send.bodies == []

            send.writable.set()  # the client reads again
            await turns_until(lambda: len(send.bodies) == 2)
            assert send.bodies[0] == message(0).sse
            assert send.bodies[1].startswith(message(1).sse)  # then the ping, same write
            assert client.pending is None and client.send_started == 0.0
            assert client.flusher is not None  # parked again, lending its flusher

    asyncio.run(run())


def test_signals_and_a_busy_writer_go_through_the_writer_task():
    async def run() -> None:
        async with parked_writer() as (hub, client, send):
            client.ping()  # a signal wakes the writer, which takes the flusher back
            assert client.backlog == 1
            hub.publish(message(0))  # behind the ping: the writer writes both, in order
            await turns_until(lambda: bool(send.bodies))
            assert b"".join(send.bodies).startswith(b": ping")
            assert b"".join(send.bodies).endswith(message(0).sse)
            assert client.backlog == 0

    asyncio.run(run())
