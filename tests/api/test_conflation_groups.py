"""Issue 16, part 2, at the hub: frame groups are per client filter, a frame is built once
for its whole group, and a status event flushes only the frames of the groups it goes to."""

from __future__ import annotations

import asyncio
import json

from api.broadcast import Client, LiveMessage, build_message, event_message
from api.conflate import ConflatingHub
from schemas.events import UnitLocation
from schemas.live import frame_positions
from schemas.position import format_position


def location(offset: int, unit: str, region: str, lat: float) -> LiveMessage:
    event = UnitLocation(
        event_id=f"m{offset}:0",
        command_id=f"m{offset}",
        region=region,
        unit_id=unit,
        lat=lat,
        lon=24.9,
        version=offset + 1,
    )
    return event_message(event, [offset + 1], 0, offset)


def status(offset: int, region: str) -> LiveMessage:
    return build_message(
        "unit_status_update",
        format_position([offset + 1]),
        "{}",
        partition=0,
        offset=offset,
        region=region,
    )


def test_a_status_event_flushes_only_the_groups_it_goes_to() -> None:
    async def scenario() -> dict[str, list[LiveMessage]]:
        hub = ConflatingHub(frames_per_s=0.01)  # no timed frame within the test
        clients = {
            "all": Client("sse", 100),
            "all2": Client("ws", 100),
            "north": Client("sse", 100, regions=frozenset({"north"})),
            "south": Client("sse", 100, regions=frozenset({"south"})),
            "facts": Client("sse", 100, events=frozenset({"unit_status_update"})),
        }
        for client in clients.values():
            hub.subscribe(client)
        hub.publish(location(0, "n1", "north", 60.1))
        hub.publish(location(1, "s1", "south", 60.2))
        hub.publish(location(2, "n1", "north", 60.3))
        hub.publish(status(3, "north"))
        hub.frames.cancel()  # nothing more is due
        built["frames"] = hub.frames.frames
        return {
            name: [i for i in c.take_nowait() if isinstance(i, LiveMessage)]
            for name, c in clients.items()
        }

    built: dict[str, int] = {}
    got = asyncio.run(scenario())
    assert built["frames"] == 2  # one per group that receives the status event
    frame, fact = got["all"]
    assert frame.event == "unit_locations" and fact.event == "unit_status_update"
    assert frame.id == "3" and frame.upto == (3,)  # after its last position
    assert {p["unit_id"]: p["lat"] for p in frame_positions(json.loads(frame.data))} == {
        "n1": 60.3,
        "s1": 60.2,
    }
    assert "event_id" not in frame.data
    assert got["all2"][0] is frame  # built once, shared by the group
    north_frame, _ = got["north"]
    assert north_frame.id == "3"
    assert [p["unit_id"] for p in frame_positions(json.loads(north_frame.data))] == ["n1"]
    assert got["south"] == []  # not flushed by a north status event it does not receive
    assert [m.event for m in got["facts"]] == ["unit_status_update"]
