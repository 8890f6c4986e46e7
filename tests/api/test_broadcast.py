"""The fan-out and position pieces on their own (no broker needed)."""

from __future__ import annotations

import asyncio
import json

import pytest

from api.broadcast import CLOSE, PING, RESYNC, Client, Hub, build_message, with_id


def test_one_encoding_is_handed_to_every_client():
    async def run() -> None:
        hub = Hub()
        clients = [Client("sse", 4) for _ in range(3)] + [Client("ws", 4, regions=frozenset({"b"}))]
        for c in clients:
            hub.subscribe(c)
        message = build_message(
            "emergency_created", "1.0", '{"id":"e1"}', partition=0, offset=0, region="a"
        )
        hub.publish(message)
        got = [c.take_nowait() for c in clients[:3]]
        assert all(items == [message] and items[0] is message for items in got)  # no copy
        assert clients[3].backlog == 0  # filtered out by region
        assert hub.delivered == 3

    asyncio.run(run())


def test_overflow_replaces_the_backlog_with_one_resync():
    async def run() -> None:
        hub, client = Hub(), Client("sse", 2)
        hub.subscribe(client)
        for n in range(10):
            hub.publish(build_message("unit_location", f"{n + 1}", "{}", partition=0, offset=n))
        items = client.take_nowait()
        assert items[0] is RESYNC and len(items) <= 2 and client.overflows >= 1
        client.close("bye")
        assert client.take_nowait() == [CLOSE] and client.backlog == 0

    asyncio.run(run())


def test_a_writer_takes_a_whole_burst_in_one_wake_up():
    async def run() -> None:
        hub, client = Hub(), Client("sse", 100)
        hub.subscribe(client)
        waiting = asyncio.get_running_loop().create_task(client.take())
        await asyncio.sleep(0)  # the writer is now waiting on its buffer
        messages = [
            build_message("unit_location", f"{n + 1}", "{}", partition=0, offset=n)
            for n in range(5)
        ]
        for message in messages:
            hub.publish(message)
        assert await waiting == messages
        assert client.backlog == 0

    asyncio.run(run())


def test_heartbeats_go_only_into_idle_buffers_and_stuck_writers_are_closed():
    async def run() -> None:
        hub = Hub()
        idle, busy, stuck = Client("sse", 8), Client("sse", 8), Client("sse", 8)
        for client in (idle, busy, stuck):
            hub.subscribe(client)
        busy.offer(build_message("unit_location", "1", "{}", partition=0, offset=0))
        loop = asyncio.get_running_loop()
        stuck.writer = loop.create_task(asyncio.sleep(60))
        stuck.send_started = loop.time()  # a write that never finishes
        keep_alive = loop.create_task(hub.keep_alive(heartbeat_s=0.05, send_timeout_s=0.2))
        try:
            while stuck in hub.clients:
                await asyncio.sleep(0.02)
        finally:
            keep_alive.cancel()
        assert idle.take_nowait()[0] is PING
        assert [item.event for item in busy.take_nowait()] == ["unit_location"]
        assert stuck.timed_out and hub.timeouts == 1
        with pytest.raises(asyncio.CancelledError):
            await stuck.writer

    asyncio.run(run())


def test_message_shapes_and_reidentified_copy():
    message = build_message(
        "command_rejected", "3.1", '{"reason":"no unit"}', partition=1, offset=0
    )
    assert message.sse == (
        b'id: 3.1\r\nevent: command_rejected\r\ndata: {"reason":"no unit"}\r\n\r\n'
    )
    assert json.loads(message.ws) == {
        "event": "command_rejected",
        "id": "3.1",
        "data": {"reason": "no unit"},
    }
    copy = with_id(message, "12.7")
    assert copy.sse == message.sse.replace(b"3.1", b"12.7")
    assert json.loads(copy.ws)["id"] == "12.7" and json.loads(copy.ws)["data"] == {
        "reason": "no unit"
    }
