"""The rules as pure functions, against a dict-backed state: no broker needed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import (
    DispatchEmergency,
    EmergencyType,
    RegisterUnit,
    ReportEmergency,
    UnitPosition,
    UnitStatus,
    UnitType,
)
from schemas.geo import load_network
from streams.decisions import Outcome, decide, movement_command_id
from streams.routing import GraphRouter
from streams.state import DispatchState, outcome_from_json, outcome_to_json
from tests.streams.world import INCIDENT, STATION

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ROUTER = GraphRouter(load_network())


def run(state: DispatchState, cmd: object, tick_s: float = 1.0) -> Outcome:
    outcome = decide(cmd, state, ROUTER, NOW, tick_s)  # type: ignore[arg-type]
    state.apply(outcome)
    return outcome


@pytest.fixture
def dispatched() -> tuple[DispatchState, str]:
    state = DispatchState({})
    run(
        state,
        RegisterUnit(
            region="r",
            unit_id="u1",
            callsign="U1",
            type=UnitType.AMBULANCE,
            lat=STATION[0],
            lon=STATION[1],
        ),
    )
    report = ReportEmergency(
        region="r", type=EmergencyType.MEDICAL, priority=1, lat=INCIDENT[0], lon=INCIDENT[1]
    )
    run(state, report)
    run(state, DispatchEmergency(region="r", emergency_id=report.emergency_id))
    return state, "u1"


def test_same_command_same_state_same_events(dispatched):
    state, _ = dispatched
    report = ReportEmergency(
        command_id="c-1",
        region="r",
        type=EmergencyType.MEDICAL,
        priority=1,
        lat=INCIDENT[0],
        lon=INCIDENT[1],
    )
    one = decide(report, state, ROUTER, NOW)
    two = decide(report, state, ROUTER, NOW)
    assert outcome_to_json(one) == outcome_to_json(two)
    assert outcome_to_json(outcome_from_json(outcome_to_json(one))) == outcome_to_json(one)


def test_a_tick_moves_only_the_version_it_was_computed_from(dispatched):
    state, unit_id = dispatched
    unit = state.unit(unit_id)
    tick = UnitPosition(region="r", unit_id=unit_id, tick=unit.version)
    moved = run(state, tick)
    assert [e.event for e in moved.events] == ["unit_location"]
    assert state.unit(unit_id).version == unit.version + 1
    stale = UnitPosition(region="r", unit_id=unit_id, tick=unit.version)  # another timer
    assert run(state, stale).events == []
    assert state.unit(unit_id).version == unit.version + 1


def test_ticks_reach_the_scene_and_stop(dispatched):
    state, unit_id = dispatched
    seen = []
    for _ in range(500):
        unit = state.unit(unit_id)
        if unit.status != UnitStatus.DISPATCHED:
            break
        seen += [
            e.event
            for e in run(state, UnitPosition(region="r", unit_id=unit_id, tick=unit.version)).events
        ]
    unit = state.unit(unit_id)
    assert unit.status == UnitStatus.ON_SCENE
    assert (unit.lat, unit.lon) == tuple(unit.route[-1])
    assert seen[-3:] == ["unit_location", "emergency_updated", "unit_status_update"]
    assert run(state, UnitPosition(region="r", unit_id=unit_id, tick=unit.version)).events == []


def test_movement_command_ids_are_stable_and_valid():
    a = movement_command_id("hki-nw-amb-1", "e" * 32, 17)
    assert a == movement_command_id("hki-nw-amb-1", "e" * 32, 17)
    assert a != movement_command_id("hki-nw-amb-1", "e" * 32, 18)
    UnitPosition(command_id=a, region="r", unit_id="u", tick=17)  # fits the schema


def test_gps_fix_moves_a_unit(dispatched):
    state, unit_id = dispatched
    out = run(state, UnitPosition(region="r", unit_id=unit_id, lat=60.17, lon=24.94))
    assert out.events[0].event == "unit_location"
    assert (state.unit(unit_id).lat, state.unit(unit_id).lon) == (60.17, 24.94)
