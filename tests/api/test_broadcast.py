"""The fan-out and position pieces on their own (no broker needed)."""

from __future__ import annotations

import asyncio
import json

import pytest

from api.broadcast import CLOSE, RESYNC, Client, Hub, build_message, with_id
from api.position import decode_position, encode_position, pad


def test_one_encoding_is_handed_to_every_client():
    async def run() -> None:
        hub = Hub()
        clients = [Client("sse", 4) for _ in range(3)] + [Client("ws", 4, regions=frozenset({"b"}))]
        for c in clients:
            hub.subscribe(c)
        message = build_message("emergency_created", "1.0", '{"id":"e1"}', partition=0,
                                offset=0, region="a")
        hub.publish(message)
        got = [c.queue.get_nowait() for c in clients[:3]]
        assert all(item is message for item in got)  # the same object, not a copy
        assert clients[3].queue.empty()  # filtered out by region
        assert hub.delivered == 3

    asyncio.run(run())


def test_overflow_replaces_the_backlog_with_one_resync():
    async def run() -> None:
        hub, client = Hub(), Client("sse", 2)
        hub.subscribe(client)
        for n in range(10):
            hub.publish(build_message("unit_location", f"{n + 1}", "{}", partition=0, offset=n))
        items = []
        while not client.queue.empty():
            items.append(client.queue.get_nowait())
        assert items[0] is RESYNC and len(items) <= 2 and client.overflows >= 1
        client.close("bye")
        assert client.queue.get_nowait() is CLOSE and client.queue.empty()

    asyncio.run(run())


def test_message_shapes_and_reidentified_copy():
    message = build_message("command_rejected", "3.1", '{"reason":"no unit"}', partition=1,
                            offset=0)
    assert message.sse == (
        b'id: 3.1\r\nevent: command_rejected\r\ndata: {"reason":"no unit"}\r\n\r\n')
    assert json.loads(message.ws) == {"event": "command_rejected", "id": "3.1",
                                      "data": {"reason": "no unit"}}
    copy = with_id(message, "12.7")
    assert copy.sse == message.sse.replace(b"3.1", b"12.7")
    assert json.loads(copy.ws)["id"] == "12.7" and json.loads(copy.ws)["data"] == {
        "reason": "no unit"}


@pytest.mark.parametrize(("text", "expected"), [
    ("12.0.7", (12, 0, 7)), ("0", (0,)), ("", None), ("a.1", None), ("1..2", None),
    ("-1.2", None), ("1" * 2000, None),
])
def test_positions(text, expected):
    assert decode_position(text) == expected
    if expected is not None:
        assert encode_position(expected) == text
    assert pad((1, 2), 3) == (1, 2, 0) and pad((1, 2, 3), 2) is None
