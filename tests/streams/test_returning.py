"""Issue 12 item 2: a unit drives back to its station (RETURNING) before it is AVAILABLE.

The transitions in and out of RETURNING, through the real worker (style of
``test_transitions.py``), and the drive home tick by tick as pure rules. A RETURNING unit
may be dispatched again (ranked from where it is); it may report AVAILABLE or
OUT_OF_SERVICE on the way, which ends the drive; nothing else moves it out of RETURNING
but its arrival at the station.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from schemas import (
    CommandRejectedEvent,
    CompleteEmergency,
    DispatchEmergency,
    EmergencyStatus,
    EmergencyType,
    RegisterUnit,
    ReportEmergency,
    UnitPosition,
    UnitStatus,
    UnitType,
)
from schemas.geo import haversine_m, load_network
from streams.decisions import AT_STATION_M, decide
from streams.routing import GraphRouter
from streams.state import DispatchState
from tests.conftest import WorkerProcess
from tests.streams.conftest import fresh_settings
from tests.streams.helpers import Commands, EventLog
from tests.streams.world import INCIDENT, STATION, World, names, new_id

P, A, S, C, X = (
    EmergencyStatus.PENDING,
    EmergencyStatus.ASSIGNED,
    EmergencyStatus.ON_SCENE,
    EmergencyStatus.COMPLETED,
    EmergencyStatus.CANCELLED,
)
AV, DI, RET, OOS = (
    UnitStatus.AVAILABLE,
    UnitStatus.DISPATCHED,
    UnitStatus.RETURNING,
    UnitStatus.OUT_OF_SERVICE,
)
REJECTED = ["command_rejected"]
ASSIGNED = ["emergency_updated:assigned", "unit_status_update"]
COMPLETED = ["emergency_updated:completed", "unit_status_update"]
CANCELLED_WITH_UNIT = ["emergency_updated:cancelled", "unit_status_update"]
ONLY_BY_CLOSING = "a unit is RETURNING when its emergency is completed or cancelled"

# start state, action, events, status after of the emergency acted on, unit status after,
# reason contains. "_away": the unit reported a GPS fix at the incident (not at its station).
TRANSITIONS = [
    ("on_scene_away", "complete", COMPLETED, C, RET, None),
    ("assigned_away", "complete", COMPLETED, C, RET, None),
    ("assigned_away", "cancel", CANCELLED_WITH_UNIT, X, RET, None),
    ("on_scene_home", "complete", COMPLETED, C, AV, None),  # at its station: no drive back
    ("returning", "dispatch_new", ASSIGNED, A, DI, None),
    ("returning", "dispatch_new_to_unit", ASSIGNED, A, DI, None),
    ("returning", "available", ["unit_status_update"], C, AV, None),
    ("returning", "out_of_service", ["unit_status_update"], C, OOS, None),
    ("returning", "arrive", REJECTED, C, RET, "only a dispatched unit can report ON_SCENE"),
    ("returning", "returning", REJECTED, C, RET, "already RETURNING"),
    ("returning", "complete", REJECTED, C, RET, "emergency is COMPLETED"),
    ("available", "returning", REJECTED, P, AV, ONLY_BY_CLOSING),
]


@pytest.fixture(scope="module")
def still_worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker whose movement timer never fires during the module (one tick an hour),
    so a RETURNING unit stays RETURNING until a case moves it."""
    tmp = tmp_path_factory.mktemp("worker")
    worker = WorkerProcess(
        fresh_settings(kafka_bootstrap, tmp, tick_seconds=3600.0), tmp / "worker.log"
    )
    try:
        yield worker.start()
    finally:
        worker.kill()


@pytest.fixture
def world(still_worker: WorkerProcess) -> Iterator[World]:
    commands, log = Commands(still_worker.settings), EventLog(still_worker.settings)
    try:
        yield World(commands, log)
    finally:
        commands.close()
        log.close()


def gps_fix(world: World, unit: str, at: tuple[float, float]) -> UnitPosition:
    return UnitPosition(
        command_id=new_id("gps"), region=world.region, unit_id=unit, lat=at[0], lon=at[1]
    )


def reach(world: World, state: str) -> tuple[str, str]:
    """An emergency and its (only) ambulance, brought to ``state``."""
    unit = world.register(STATION)
    emergency = world.report()
    if state == "available":
        return emergency, unit
    world.run(world.dispatch(emergency))
    if state != "on_scene_home":
        world.run(gps_fix(world, unit, INCIDENT))
    if state in ("on_scene_away", "on_scene_home", "returning"):
        world.run(world.set_status(unit, UnitStatus.ON_SCENE))
    if state == "returning":
        (_, status) = world.run(world.complete(emergency))
        assert status.unit.status == RET
    return emergency, unit


def act(world: World, action: str, emergency: str, unit: str) -> tuple[object, str]:
    """The command, and the emergency whose status the case checks."""
    if action.startswith("dispatch_new"):
        emergency = world.report(EmergencyType.MEDICAL, at=STATION)
        return world.dispatch(emergency, unit if action.endswith("to_unit") else None), emergency
    return {
        "complete": lambda: world.complete(emergency),
        "cancel": lambda: world.cancel(emergency),
        "arrive": lambda: world.set_status(unit, UnitStatus.ON_SCENE),
        "out_of_service": lambda: world.set_status(unit, UnitStatus.OUT_OF_SERVICE),
        "available": lambda: world.set_status(unit, UnitStatus.AVAILABLE),
        "returning": lambda: world.set_status(unit, UnitStatus.RETURNING),
    }[action](), emergency


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("start", "action", "expected", "emergency_after", "unit_after", "reason"),
    TRANSITIONS,
    ids=[f"{t[0]}-{t[1]}" for t in TRANSITIONS],
)
def test_returning_transition(world, start, action, expected, emergency_after, unit_after, reason):
    emergency, unit = reach(world, start)
    before = world.log.projection()
    cmd, checked = act(world, action, emergency, unit)
    events = world.run(cmd)

    assert names(events) == expected
    after = world.log.projection()
    assert after.emergencies[checked].status == emergency_after
    moved = after.units[unit]
    assert moved.status == unit_after
    if reason is not None:
        (rejection,) = events
        assert isinstance(rejection, CommandRejectedEvent) and reason in rejection.reason
        assert after.units[unit] == before.units[unit]  # a rejection changes nothing
        return
    was = before.units[unit]
    assert events[-1].unit == moved  # the full new state, in the event
    if unit_after == RET:  # on its way home from where it was, no emergency
        assert moved.emergency_id is None and moved.eta_s and moved.eta_s > 0
        assert tuple(moved.route[0]) == pytest.approx((was.lat, was.lon), abs=1e-6)
        assert tuple(moved.route[-1]) == pytest.approx(STATION, abs=1e-6)
    elif unit_after in (AV, OOS):  # the drive (if any) ends where the unit is
        assert moved.emergency_id is None and moved.route is None and moved.eta_s is None
        assert (moved.lat, moved.lon) == (was.lat, was.lon)
    else:  # dispatched again: from where it is, to the new emergency
        assert moved.emergency_id == checked
        assert tuple(moved.route[0]) == pytest.approx((was.lat, was.lon), abs=1e-6)
        assert events[0].dispatch.chosen_unit_id == unit


# -- the drive home, tick by tick (pure rules: no broker) ----------------------------------

ROUTER = GraphRouter(load_network())
T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def _returning_unit() -> tuple[DispatchState, str]:
    state = DispatchState({})

    def run(cmd: object) -> None:
        state.apply(decide(cmd, state, ROUTER, T0))  # type: ignore[arg-type]

    run(
        RegisterUnit(
            region="r",
            unit_id="u1",
            callsign="U1",
            type=UnitType.AMBULANCE,
            lat=STATION[0],
            lon=STATION[1],
        )
    )
    report = ReportEmergency(
        region="r", type=EmergencyType.MEDICAL, priority=1, lat=INCIDENT[0], lon=INCIDENT[1]
    )
    run(report)
    run(DispatchEmergency(region="r", emergency_id=report.emergency_id))
    run(UnitPosition(region="r", unit_id="u1", lat=INCIDENT[0], lon=INCIDENT[1]))
    run(CompleteEmergency(region="r", emergency_id=report.emergency_id))
    return state, "u1"


def test_a_returning_unit_drives_home_and_is_available_at_its_station():
    state, unit_id = _returning_unit()
    unit = state.unit(unit_id)
    assert unit is not None and unit.status == RET
    assert haversine_m(unit.lat, unit.lon, *STATION) > AT_STATION_M
    etas = []
    for n in range(1, 1000):
        tick = UnitPosition(region="r", unit_id=unit_id, tick=unit.version, issued_by="worker")
        outcome = decide(tick, state, ROUTER, T0 + timedelta(seconds=n))
        state.apply(outcome)
        unit = state.unit(unit_id)
        assert unit is not None
        if unit.status != RET:
            break
        etas.append(unit.eta_s)
    assert unit.status == AV
    assert names(outcome.events) == ["unit_location", "unit_status_update"]
    assert (unit.lat, unit.lon) == pytest.approx(STATION, abs=1e-6)
    assert unit.route is None and unit.eta_s is None and unit.emergency_id is None
    assert len(etas) >= 3 and etas == sorted(etas, reverse=True)  # real steps, counting down
    # a stale tick (an older version) moves nothing
    stale = UnitPosition(region="r", unit_id=unit_id, tick=unit.version - 1, issued_by="worker")
    assert decide(stale, state, ROUTER, T0).events == []


def test_the_movement_timer_moves_returning_units():
    state, unit_id = _returning_unit()
    assert [u.id for u in state.moving_units()] == [unit_id]


def test_a_returning_unit_is_dispatched_when_it_is_the_fastest():
    """Ranked from where it is: a returning unit near a new emergency beats one at home."""
    state, unit_id = _returning_unit()
    far = load_network().region("hki-se").center
    state.apply(
        decide(
            RegisterUnit(
                region="r",
                unit_id="u2",
                callsign="U2",
                type=UnitType.AMBULANCE,
                lat=far[0],
                lon=far[1],
            ),
            state,
            ROUTER,
            T0,
        )
    )
    report = ReportEmergency(
        region="r", type=EmergencyType.MEDICAL, priority=1, lat=INCIDENT[0], lon=INCIDENT[1]
    )
    state.apply(decide(report, state, ROUTER, T0))
    outcome = decide(
        DispatchEmergency(region="r", emergency_id=report.emergency_id), state, ROUTER, T0
    )
    decision = outcome.events[0].dispatch
    assert decision.chosen_unit_id == unit_id
    assert {c.unit_id for c in decision.candidates} == {unit_id, "u2"}
