"""Issue 16, part 2: a ``unit_locations`` frame is columnar (``schemas.live``), the field
names once and one row per unit, so 4 frames a second of a city's fleet to 1,000 dashboards
are not most of the API's writes; its rows still decode to exactly each unit's latest
position, every field, every digit.

No broker: the conflating hub fed the live messages the read model builds
(``event_message`` of real ``UnitLocation`` events)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from api.broadcast import Client, LiveMessage, event_message
from api.conflate import ConflatingHub
from schemas.entities import Unit, UnitStatus, UnitType
from schemas.events import Event, UnitLocation, UnitStatusUpdate
from schemas.live import POSITION_FIELDS, frame_positions

UNITS = 300
STEPS = 3  # positions of each unit before the frame: the frame holds the last


def fix(n: int, step: int) -> UnitLocation:
    """A GPS fix as the worker writes it: 7 decimals of a degree, a heading and an ETA to a
    tenth (``streams.movement``), a route index while driving, the unit's next version."""
    driving = n % 3 != 0
    return UnitLocation(
        event_id=f"gps-{n}-{step}:0",
        command_id=f"gps-{n}-{step}",
        region="hki-c",
        unit_id=f"hki-c-amb-{n}",
        lat=round(60.1512345 + n / 7919 + step / 100_003, 7),
        lon=round(24.9012345 + n / 6007 - step / 100_019, 7),
        heading=round((n * 37 + step) % 360 + 0.4, 1) if driving else None,
        eta_s=round(300.0 - step * 1.5 - n / 10, 1) if driving else None,
        route_index=step + n % 40 if driving else None,
        version=10 + step,
    )


def out_of_service(unit_id: str) -> UnitStatusUpdate:
    unit = Unit(
        id=unit_id,
        callsign=unit_id.upper(),
        type=UnitType.AMBULANCE,
        region="hki-c",
        status=UnitStatus.OUT_OF_SERVICE,
        lat=60.17,
        lon=24.94,
    )
    return UnitStatusUpdate(
        event_id=f"oos-{unit_id}:0",
        command_id=f"oos-{unit_id}",
        region="hki-c",
        unit_id=unit_id,
        status=UnitStatus.OUT_OF_SERVICE,
        unit=unit,
    )


def live(events: list[Event]) -> dict[str, list[LiveMessage]]:
    """``events`` through a conflating hub (a status event among them flushes the pending
    frame): what two clients of one group got."""

    async def scenario() -> dict[str, list[LiveMessage]]:
        hub = ConflatingHub(frames_per_s=0.01)  # no timed frame within the test
        clients = {"sse": Client("sse", 10), "ws": Client("ws", 10)}
        for client in clients.values():
            hub.subscribe(client)
        for offset, event in enumerate(events):
            hub.publish(event_message(event, [offset + 1], 0, offset))
        hub.frames.cancel()
        return {
            name: [i for i in c.take_nowait() if isinstance(i, LiveMessage)]
            for name, c in clients.items()
        }

    return asyncio.run(scenario())


def expected(event: UnitLocation) -> dict[str, Any]:
    data = event.live_data()
    del data["event_id"]  # a frame's id names its place in the log
    return data


def test_a_frame_of_a_fleet_is_rows_that_decode_to_every_units_latest_position() -> None:
    fixes = [fix(n, step) for step in range(STEPS) for n in range(UNITS)]
    # full-precision floats too: nothing is rounded on the way
    fixes.append(fix(7, STEPS).model_copy(update={"lat": 60.16991234567891, "eta_s": 1 / 3}))
    got = live([*fixes, out_of_service("hki-c-amb-1")])
    frame, fact = got["sse"]
    assert (frame.event, fact.event) == ("unit_locations", "unit_status_update")
    assert got["ws"][0] is frame  # one frame for the group

    body = json.loads(frame.data)
    assert body["fields"] == list(POSITION_FIELDS)
    positions = frame_positions(body)
    latest = {f.unit_id: expected(f) for f in fixes}  # the last of each unit wins
    assert {p["unit_id"]: p for p in positions} == latest
    assert len(positions) == UNITS  # each unit once
    assert json.loads(frame.ws)["data"] == body
    last = event_message(fixes[-1], [len(fixes)], 0, len(fixes) - 1)
    assert last.row is not None and last.row in frame.data  # the row as its message has it

    # compact: the field names once, not once per unit (an object per unit was ~121 bytes
    # here, ~130 with the simulator's longer ids)
    per_unit = len(frame.data.encode()) / UNITS
    assert per_unit <= 65, f"{per_unit:.1f} bytes a unit"
