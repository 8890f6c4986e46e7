"""Issue 16: a GPS fix (``unit_position`` with lat/lon) is cheap in the worker. It writes no
command record, so the table does not grow with fixes; it is applied only if newer than the
unit's state, so a retried or redelivered fix moves the unit once (``streams.processing``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas import RegisterUnit, UnitPosition, UnitType, encode
from schemas.events import UnitLocation
from schemas.geo import load_network
from streams.processing import decide_command
from streams.routing import GraphRouter
from streams.state import DispatchState
from tests.streams.world import STATION, World, new_id

ROUTER = GraphRouter(load_network())
AT = 1_735_732_800.0  # 2025-01-01 12:00 UTC: the registration, before every fix below


def registered() -> DispatchState:
    state = DispatchState({})
    unit = RegisterUnit(
        command_id="reg-1",
        region="r",
        unit_id="u1",
        callsign="U1",
        type=UnitType.AMBULANCE,
        lat=STATION[0],
        lon=STATION[1],
    )
    assert decide_command(state, ROUTER, 1.0, encode(unit), AT, (0, 1)) is not None
    return state


def fix(n: int, first: UnitPosition | None = None) -> UnitPosition:
    """The n-th fix of unit u1: n metres-ish north of the station, n seconds later."""
    base = first or UnitPosition(
        command_id="gps-0", region="r", unit_id="u1", lat=STATION[0], lon=STATION[1]
    )
    return base.model_copy(
        update={
            "command_id": f"gps-{n}",
            "lat": round(STATION[0] + n * 1e-5, 7),
            "issued_at": base.issued_at + timedelta(seconds=n),
        }
    )


def test_fixes_write_no_command_records_so_the_table_does_not_grow():
    state = registered()
    keys = set(state.table)
    first = fix(0)
    for n in range(1, 51):
        out = decide_command(state, ROUTER, 1.0, encode(fix(n, first)), AT + n, (0, 1 + n))
        assert out is not None and [e.event for e in out.events] == ["unit_location"]
    assert set(state.table) == keys  # the unit's entry changed in place; nothing was added
    unit = state.unit("u1")
    assert unit is not None and unit.version == 51 and unit.lat == round(STATION[0] + 50e-5, 7)


def test_a_fix_sent_twice_moves_the_unit_once():
    state = registered()
    one = fix(1)
    moved = decide_command(state, ROUTER, 1.0, encode(one), AT + 1, (0, 10))
    assert moved is not None and len(moved.events) == 1
    location = moved.events[0]
    assert isinstance(location, UnitLocation) and location.version == 2
    table = dict(state.table)
    # the same fix again: a client's retry (a later message) and a crash's redelivery (the
    # same message). Either finds the unit already at this fix: the table is untouched and
    # the answer, if any, is the same event again (same id, same version: consumers keep one)
    for source, at in [((0, 11), AT + 5), ((0, 10), AT + 1), ((0, 12), AT + 9)]:
        again = decide_command(state, ROUTER, 1.0, encode(one), at, source)
        assert again is None or again.events == [location], again
        assert state.table == table
    unit = state.unit("u1")
    assert unit is not None and unit.version == 2


def test_an_older_fix_after_a_newer_one_is_a_no_op():
    state = registered()
    first = fix(0)
    newer = fix(2, first)
    assert decide_command(state, ROUTER, 1.0, encode(newer), AT + 2, (0, 10)) is not None
    table = dict(state.table)
    # an older fix delivered late (or a retry of it after the newer one was applied)
    assert decide_command(state, ROUTER, 1.0, encode(fix(1, first)), AT + 3, (0, 11)) is None
    assert state.table == table
    unit = state.unit("u1")
    assert unit is not None and unit.lat == newer.lat and unit.version == 2


def test_a_crash_after_the_unit_entry_but_before_the_event_re_publishes_it():
    """The changelog write of a fix reached the broker, its event did not, its offset was not
    committed: the redelivered fix finds its own state and makes its event again."""
    state = registered()
    one = fix(1)
    moved = decide_command(state, ROUTER, 1.0, encode(one), AT + 1, (0, 10))
    assert moved is not None
    # a worker restarted from the changelog: the table's texts, nothing else
    recovered = DispatchState(dict(state.table))
    again = decide_command(recovered, ROUTER, 1.0, encode(one), AT + 1, (0, 10))
    assert again is not None and again.events == moved.events
    assert again.events[0].model_dump_json() == moved.events[0].model_dump_json()
    # and one cut before the unit entry: the fix is decided again into the same texts
    fresh = registered()
    decided = decide_command(fresh, ROUTER, 1.0, encode(one), AT + 1, (0, 10))
    assert decided is not None
    assert [e.model_dump_json() for e in decided.events] == [
        e.model_dump_json() for e in moved.events
    ]
    assert fresh.table == state.table


@pytest.mark.kafka
def test_a_retried_fix_through_the_worker_leaves_one_effect(shared_worker, commands, event_log):
    world = World(commands, event_log)
    unit_id = world.register(STATION)
    one = UnitPosition(
        command_id=new_id("gps"),
        region=world.region,
        unit_id=unit_id,
        lat=round(STATION[0] + 1e-4, 7),
        lon=STATION[1],
        issued_by="simulator",
    )
    first = world.run(one)
    assert [e.event for e in first] == ["unit_location"], first
    # the same fix sent again three times (the sender's retries), each a new message
    answered = world.run(one) + world.run(one) + world.run(one)
    # no command_repeated and no second move: at most the same event again
    assert {(e.event, e.event_id, e.version) for e in answered} <= {  # type: ignore[attr-defined]
        ("unit_location", first[0].event_id, first[0].version)  # type: ignore[attr-defined]
    }, answered
    state = shared_worker.state()
    unit = next(u for u in state["units"] if u["id"] == unit_id)
    assert unit["version"] == first[0].version and unit["lat"] == one.lat  # type: ignore[attr-defined]
