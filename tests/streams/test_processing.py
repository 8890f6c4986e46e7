"""``streams.processing.decide_command``: one command's record check and decision against a
dict-backed state (the worker runs the same function against its Faust table)."""

from __future__ import annotations

import pytest

from schemas import (
    EmergencyType,
    RegisterUnit,
    ReportEmergency,
    SchemaError,
    UnitPosition,
    encode,
)
from schemas.events import CommandRejectedEvent
from schemas.geo import load_network
from streams.processing import decide_command
from streams.routing import GraphRouter
from streams.state import DispatchState
from tests.streams.world import INCIDENT, STATION

ROUTER = GraphRouter(load_network())
AT = 1_735_732_800.0  # 2025-01-01 12:00 UTC, the record's timestamp


def report(command_id: str, priority: int = 1) -> ReportEmergency:
    return ReportEmergency(
        command_id=command_id,
        region="r",
        type=EmergencyType.MEDICAL,
        priority=priority,
        lat=INCIDENT[0],
        lon=INCIDENT[1],
    )


def test_a_command_is_recorded_then_applied_and_a_retry_finishes_the_record():
    state = DispatchState({})
    first = decide_command(state, ROUTER, 1.0, encode(report("c-1")), AT)
    assert first is not None and [e.event for e in first.events] == ["emergency_created"]
    emergency_id = first.events[0].emergency.id
    assert state.emergency(emergency_id) is not None
    assert state.record(state.record_key(report("c-1")), "c-1") is not None
    # a redelivery (crash replay or client retry), later: the same events, no new state
    again = decide_command(state, ROUTER, 1.0, encode(report("c-1")), AT + 60)
    assert again is not None
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert state.emergency(emergency_id).version == first.events[0].emergency.version


def test_another_command_under_a_used_id_is_refused_and_not_recorded():
    state = DispatchState({})
    decide_command(state, ROUTER, 1.0, encode(report("c-1", priority=1)), AT)
    recorded = dict(state.table)
    refused = decide_command(state, ROUTER, 1.0, encode(report("c-1", priority=3)), AT)
    assert refused is not None and len(refused.events) == 1
    assert isinstance(refused.events[0], CommandRejectedEvent)
    assert "already used" in refused.events[0].reason
    assert state.table == recorded


def test_a_command_that_changes_nothing_returns_none_and_writes_nothing():
    state = DispatchState({})
    unit = RegisterUnit(
        command_id="reg-1",
        region="r",
        unit_id="u1",
        callsign="U1",
        type="ambulance",
        lat=STATION[0],
        lon=STATION[1],
    )
    assert decide_command(state, ROUTER, 1.0, encode(unit), AT) is not None
    before = dict(state.table)
    # a movement tick for a unit that is not moving (a stale tick): nothing happened
    tick = UnitPosition(
        command_id="move-u1-1", region="r", unit_id="u1", tick=1, issued_by="worker"
    )
    assert decide_command(state, ROUTER, 1.0, encode(tick), AT) is None
    assert state.table == before


def test_an_undecodable_command_raises_schema_error_and_writes_nothing():
    state = DispatchState({})
    with pytest.raises(SchemaError):
        decide_command(state, ROUTER, 1.0, b'{"kind": "report_emergency"', AT)
    assert state.table == {}
