"""Commands and events survive the one encoding; bad input is refused field by field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas import (
    CancelEmergency,
    CommandRejectedEvent,
    CompleteEmergency,
    DispatchDecision,
    DispatchEmergency,
    Emergency,
    EmergencyCreated,
    EmergencyStatus,
    EmergencyUpdated,
    RegisterUnit,
    ReportEmergency,
    SchemaError,
    SetUnitStatus,
    Unit,
    UnitLocation,
    UnitPosition,
    UnitStatus,
    UnitStatusUpdate,
    decode_command,
    decode_event,
    encode,
    parse,
)
from schemas.jsonschema import SCHEMA_DIR, all_schemas, render
from schemas.requests import ReportRequest

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EMERGENCY = Emergency(
    id="e1",
    region="r1",
    type="fire",
    priority=1,
    lat=60.17,
    lon=24.94,
    description="smoke <b>x</b>",
    reported_at=T0,
)
UNIT = Unit(id="u1", callsign="F-11", type="fire_engine", region="r1", lat=60.16, lon=24.93)

COMMANDS = [
    ReportEmergency(
        region="r1",
        type="medical",
        priority=2,
        lat=60.1,
        lon=24.9,
        reporter={"name": "Aino", "phone": "+358 40 123"},
    ),
    DispatchEmergency(region="r1", emergency_id="e1"),
    DispatchEmergency(region="r1", emergency_id="e1", unit_id="u7"),
    CompleteEmergency(region="r1", emergency_id="e1"),
    CancelEmergency(region="r1", emergency_id="e1", reason="duplicate call"),
    SetUnitStatus(region="r1", unit_id="u1", status="OUT_OF_SERVICE"),
    UnitPosition(region="r1", unit_id="u1", tick=3),
    UnitPosition(region="r1", unit_id="u1", lat=60.2, lon=24.95),
    RegisterUnit(region="r1", unit_id="u1", callsign="A-1", type="ambulance", lat=60.1, lon=24.9),
]

EVENTS = [
    EmergencyCreated(event_id="c1:0", command_id="c1", region="r1", emergency=EMERGENCY),
    EmergencyUpdated(
        event_id="c2:0",
        command_id="c2",
        region="r1",
        action="assigned",
        emergency=EMERGENCY.model_copy(
            update={"status": EmergencyStatus.ASSIGNED, "assigned_unit_id": "u1"}
        ),
        unit=UNIT.model_copy(
            update={
                "status": UnitStatus.DISPATCHED,
                "emergency_id": "e1",
                "route": [(60.16, 24.93), (60.17, 24.94)],
            }
        ),
        dispatch=DispatchDecision(chosen_unit_id="u1", distance_m=1200.0, eta_s=95.0),
    ),
    UnitStatusUpdate(
        event_id="c2:1",
        command_id="c2",
        region="r1",
        unit_id="u1",
        status="DISPATCHED",
        emergency_id="e1",
        unit=UNIT,
    ),
    UnitLocation(
        event_id="c3:0",
        command_id="c3",
        region="r1",
        unit_id="u1",
        lat=60.165,
        lon=24.935,
        heading=45.0,
        eta_s=40.0,
        version=3,
    ),
    CommandRejectedEvent(
        event_id="c4:0",
        command_id="c4",
        region="r1",
        command_kind="dispatch_emergency",
        reason="no available fire_engine",
    ),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.kind)
def test_command_round_trip(command: object) -> None:
    assert decode_command(encode(command)) == command  # type: ignore[arg-type]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.event)
def test_event_round_trip(event: object) -> None:
    raw = encode(event)  # type: ignore[arg-type]
    assert decode_event(raw) == event
    assert json.loads(raw)["event"] == event.event  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"type": "alien", "lat": 60, "lon": 24}, "type", "Input should be"),
        ({"type": "fire", "lat": 91, "lon": 24}, "lat", "less than or equal to 90"),
        ({"type": "fire", "lat": 60, "lon": -181}, "lon", "greater than or equal to -180"),
        ({"type": "fire", "lat": 60, "lon": 24, "priority": 0}, "priority", "greater than"),
        ({"type": "fire", "lon": 24}, "lat", "Field required"),
        ({"type": "fire", "lat": "north", "lon": 24}, "lat", "valid number"),
        (
            {"type": "fire", "lat": 60, "lon": 24, "description": "x" * 2001},
            "description",
            "at most 2000",
        ),
        ({"type": "fire", "lat": 60, "lon": 24, "colour": "red"}, "colour", "Extra inputs"),
        (
            {"type": "fire", "lat": 60, "lon": 24, "reporter": {"phone": "call me"}},
            "reporter.phone",
            "should match pattern",
        ),
        ({"type": "fire", "lat": 60, "lon": 24, "region": "hki-ne"}, "region", "Extra inputs"),
    ],
)
def test_report_rejections_name_the_field(body: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse(ReportRequest, body)
    matching = [e for e in info.value.errors if e["field"] == field]
    assert matching, info.value.errors
    assert reason in matching[0]["reason"]


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        b'{"kind": "launch_rockets", "region": "r1"}',
        b'{"kind": "dispatch_emergency", "region": "r1"}',
        b"[]",
    ],
)
def test_undecodable_commands_raise_schema_error(raw: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_command(raw)


def test_live_data_shapes_match_the_design() -> None:
    created, assigned, status, location, rejected = (e.live_data() for e in EVENTS)
    assert created["id"] == "e1" and created["status"] == "PENDING"
    assert assigned["action"] == "assigned"
    assert assigned["emergency"]["status"] == "ASSIGNED"
    assert assigned["unit"]["status"] == "DISPATCHED"
    assert set(status) == {"event_id", "unit_id", "status", "emergency_id", "unit"}
    assert {"unit_id", "lat", "lon", "heading", "eta_s"} <= set(location)
    assert rejected["command_id"] == "c4" and rejected["reason"].startswith("no available")


def test_exported_json_schemas_are_current() -> None:
    """`dispatchwire schemas export` must be re-run when a type changes."""
    for name, schema in all_schemas().items():
        path = SCHEMA_DIR / f"{name}.schema.json"
        stale = f"{path} is stale: run `dispatchwire schemas export`"
        assert path.read_text() == render(schema), stale
