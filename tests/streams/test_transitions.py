"""Every state transition of an emergency and its unit, through the real worker."""

from __future__ import annotations

import pytest

from schemas import (
    CommandRejectedEvent,
    EmergencyStatus,
    EmergencyType,
    EmergencyUpdated,
    UnitStatus,
    UnitStatusUpdate,
    UnitType,
)
from schemas.events import CommandRepeated
from tests.conftest import wait_for
from tests.streams.helpers import EventLog
from tests.streams.world import FAR_STATION, STATION, World, names

pytestmark = pytest.mark.kafka

P, A, S, C, X = (
    EmergencyStatus.PENDING,
    EmergencyStatus.ASSIGNED,
    EmergencyStatus.ON_SCENE,
    EmergencyStatus.COMPLETED,
    EmergencyStatus.CANCELLED,
)
AV, DI, OS, OOS = (
    UnitStatus.AVAILABLE,
    UnitStatus.DISPATCHED,
    UnitStatus.ON_SCENE,
    UnitStatus.OUT_OF_SERVICE,
)
REJECTED = ["command_rejected"]
ASSIGNED = ["emergency_updated:assigned", "unit_status_update"]
ON_SCENE = ["emergency_updated:on_scene", "unit_status_update"]
COMPLETED = ["emergency_updated:completed", "unit_status_update"]
CANCELLED_WITH_UNIT = ["emergency_updated:cancelled", "unit_status_update"]

# start state, action, events, emergency status after, unit status after, reason contains
TRANSITIONS = [
    ("pending", "dispatch", ASSIGNED, A, DI, None),
    ("assigned", "arrive", ON_SCENE, S, OS, None),
    ("assigned", "complete", COMPLETED, C, AV, None),
    ("on_scene", "complete", COMPLETED, C, AV, None),
    ("pending", "cancel", ["emergency_updated:cancelled"], X, AV, None),
    ("assigned", "cancel", CANCELLED_WITH_UNIT, X, AV, None),
    ("on_scene", "cancel", CANCELLED_WITH_UNIT, X, AV, None),
    ("pending", "out_of_service", ["unit_status_update"], P, OOS, None),
    ("out_of_service", "available", ["unit_status_update"], P, AV, None),
    ("assigned", "dispatch", REJECTED, A, DI, "only a PENDING emergency can be dispatched"),
    ("on_scene", "dispatch", REJECTED, S, OS, "only a PENDING emergency can be dispatched"),
    ("completed", "dispatch", REJECTED, C, AV, "only a PENDING emergency can be dispatched"),
    ("cancelled", "dispatch", REJECTED, X, AV, "only a PENDING emergency can be dispatched"),
    ("pending", "complete", REJECTED, P, AV, "cancel it instead"),
    ("completed", "complete", REJECTED, C, AV, "emergency is COMPLETED"),
    ("completed", "cancel", REJECTED, C, AV, "emergency is COMPLETED"),
    ("cancelled", "cancel", REJECTED, X, AV, "emergency is CANCELLED"),
    ("out_of_service", "dispatch", REJECTED, P, OOS, "no available ambulance"),
    ("pending", "arrive", REJECTED, P, AV, "only a dispatched unit can report ON_SCENE"),
    ("assigned", "out_of_service", REJECTED, A, DI, "complete or cancel that emergency first"),
    ("pending", "available", REJECTED, P, AV, "already AVAILABLE"),
]


def reach(world: World, state: str) -> tuple[str, str]:
    """An emergency and its (only) ambulance, brought to ``state``."""
    unit = world.register(STATION)
    emergency = world.report()
    if state in ("assigned", "on_scene", "completed"):
        world.run(world.dispatch(emergency))
    if state == "on_scene":
        world.run(world.set_status(unit, UnitStatus.ON_SCENE))
    if state == "completed":
        world.run(world.complete(emergency))
    if state == "cancelled":
        world.run(world.cancel(emergency))
    if state == "out_of_service":
        world.run(world.set_status(unit, UnitStatus.OUT_OF_SERVICE))
    return emergency, unit


def act(world: World, action: str, emergency: str, unit: str) -> object:
    return {
        "dispatch": lambda: world.dispatch(emergency),
        "complete": lambda: world.complete(emergency),
        "cancel": lambda: world.cancel(emergency),
        "arrive": lambda: world.set_status(unit, UnitStatus.ON_SCENE),
        "out_of_service": lambda: world.set_status(unit, UnitStatus.OUT_OF_SERVICE),
        "available": lambda: world.set_status(unit, UnitStatus.AVAILABLE),
    }[action]()


@pytest.mark.parametrize(
    ("start", "action", "expected", "emergency_after", "unit_after", "reason"),
    TRANSITIONS,
    ids=[f"{t[0]}-{t[1]}" for t in TRANSITIONS],
)
def test_transition(
    shared_worker, commands, event_log, start, action, expected, emergency_after, unit_after, reason
):
    world = World(commands, event_log)
    emergency, unit = reach(world, start)
    before = event_log.projection()
    cmd = act(world, action, emergency, unit)
    events = world.run(cmd)

    assert names(events) == expected
    assert [e.event_id for e in events] == [f"{cmd.command_id}:{n}" for n in range(len(events))]
    after = event_log.projection()
    assert after.emergencies[emergency].status == emergency_after
    assert after.units[unit].status == unit_after
    if reason is None:
        for event in events:  # full new state, each changed entity one version up
            for entity in (getattr(event, "emergency", None), getattr(event, "unit", None)):
                if entity is not None:
                    old = before.emergencies if hasattr(entity, "priority") else before.units
                    assert entity.version == old[entity.id].version + 1
    else:
        (rejection,) = events
        assert isinstance(rejection, CommandRejectedEvent)
        assert reason in rejection.reason
        assert after.as_json() == before.as_json()  # a rejection changes nothing
    if unit_after == AV and emergency_after in (C, X):
        assert after.units[unit].emergency_id is None
        assert after.units[unit].route is None


def test_dispatch_picks_the_fastest_fitting_unit_and_says_why(shared_worker, commands, event_log):
    world = World(commands, event_log)
    far = world.register(FAR_STATION)
    near = world.register(STATION)
    world.register(STATION, UnitType.FIRE_ENGINE)  # does not fit a medical emergency
    emergency = world.report(EmergencyType.MEDICAL)
    assigned, status = world.run(world.dispatch(emergency))

    assert isinstance(assigned, EmergencyUpdated) and isinstance(status, UnitStatusUpdate)
    decision = assigned.dispatch
    assert decision is not None and decision.chosen_unit_id == near and not decision.overridden
    assert [c.unit_id for c in decision.candidates] == [near, far]
    assert decision.candidates[0].eta_s < decision.candidates[1].eta_s
    assert decision.candidates[0].distance_m < decision.candidates[1].distance_m
    unit = assigned.unit
    assert unit is not None and unit.status == DI and unit.emergency_id == emergency
    assert unit.route is not None and len(unit.route) >= 3
    assert tuple(unit.route[0]) == STATION and unit.eta_s == decision.eta_s > 0
    assert assigned.emergency.assigned_unit_id == near
    assert status.unit == unit  # the same new state in both events


def test_explicit_unit_overrides_the_recommendation(shared_worker, commands, event_log):
    world = World(commands, event_log)
    far = world.register(FAR_STATION)
    world.register(STATION)
    emergency = world.report()
    assigned, _ = world.run(world.dispatch(emergency, unit_id=far))
    assert assigned.dispatch.chosen_unit_id == far and assigned.dispatch.overridden


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no_fitting_type", "no available fire engine in region"),
        ("all_busy", "no available ambulance in region"),
        ("named_unit_busy", "is DISPATCHED to emergency"),
        ("named_unit_wrong_type", "a medical emergency needs a ambulance"),
        ("named_unit_unknown", "no unit nobody-1"),
        ("unknown_emergency", "no emergency"),
    ],
)
def test_dispatch_rejections_leave_the_emergency_pending(
    shared_worker, commands, event_log, case, reason
):
    world = World(commands, event_log)
    ambulance = world.register(STATION)
    fire = world.register(STATION, UnitType.FIRE_ENGINE)
    kind = EmergencyType.FIRE if case == "no_fitting_type" else EmergencyType.MEDICAL
    if case == "no_fitting_type":
        world.run(world.set_status(fire, UnitStatus.OUT_OF_SERVICE))
    if case in ("all_busy", "named_unit_busy"):
        world.run(world.dispatch(world.report()))
    emergency = world.report(kind)
    unit_id = {
        "named_unit_busy": ambulance,
        "named_unit_wrong_type": fire,
        "named_unit_unknown": "nobody-1",
    }.get(case)
    target = "no-such-emergency" if case == "unknown_emergency" else emergency
    (rejection,) = world.run(world.dispatch(target, unit_id=unit_id))
    assert isinstance(rejection, CommandRejectedEvent)
    assert reason in rejection.reason
    assert rejection.command_kind == "dispatch_emergency"
    assert event_log.projection().emergencies[emergency].status == P


def test_duplicated_command_is_a_no_op(shared_worker, commands, event_log):
    world = World(commands, event_log)
    world.register(STATION)
    world.register(FAR_STATION)
    emergency = world.report()
    cmd = world.dispatch(emergency)
    first = world.run(cmd)
    state_after_first = shared_worker.state()
    fold_after_first = event_log.projection().as_json()
    again = world.run(cmd)  # sent again: same command id, a later message

    # Answered with one command_repeated naming its events (issue 16: no copies of them),
    # and nothing else happens.
    assert again[: len(first)] == first and len(again) == len(first) + 1
    repeat = again[-1]
    assert isinstance(repeat, CommandRepeated)
    assert repeat.event_ids == [e.event_id for e in first]
    assert shared_worker.state() == state_after_first
    assert event_log.projection().as_json() == fold_after_first
    busy = [
        u
        for u in event_log.projection().units.values()
        if u.region == world.region and u.status == DI
    ]
    assert len(busy) == 1


def test_registering_a_unit_twice_changes_nothing(shared_worker, commands, event_log):
    world = World(commands, event_log)
    unit = world.register(STATION, unit_id="twice-1")
    before = event_log.projection().units[unit]
    world.register(STATION, unit_id="twice-1")  # new command id, same unit
    after = event_log.projection().units[unit]
    assert after == before and after.version == 1


def test_undecodable_command_goes_to_the_dead_letter_topic(shared_worker, commands, event_log):
    world = World(commands, event_log)
    commands.send_raw(world.region.encode(), b'{"kind": "dispatch_emergency", "oops": 1}')
    commands.send_raw(world.region.encode(), b"\xff not json")
    unit = world.register(STATION)  # the worker keeps going
    assert unit in event_log.projection().units
    dlq = EventLog(shared_worker.settings, topic=shared_worker.settings.dead_letter_topic)
    try:

        def dead_letters() -> list:
            dlq.poll()
            return [r for r in dlq.records if r.key == world.region.encode()]

        letters = wait_for(
            lambda: len(dead_letters()) >= 2 and dead_letters(), message="two dead letters"
        )
        assert [r.value for r in letters] == [
            b'{"kind": "dispatch_emergency", "oops": 1}',
            b"\xff not json",
        ]
        assert all(dict(r.headers)["error"] for r in letters)
    finally:
        dlq.close()


def test_worker_table_equals_the_fold_of_the_event_log(shared_worker, event_log):
    """Runs last in this module: everything the cases did, seen two ways."""

    def same() -> bool:
        event_log.poll()
        return event_log.projection().as_json() == shared_worker.state()

    wait_for(same, timeout=30, message="the table to equal the fold")
    assert shared_worker.state()["units"]  # not two empty dicts
