"""Issue 16, part 2: what a city-wide dispatch reads, read cheaply and right.

While 1,000 units send a fix a second, every fix is a new unit state in the worker's table
and on ``dispatch.units``, and every dispatch reads all 1,000 units (``DispatchState.fleet``).
The fleet view keeps the records as read and parses a unit when a dispatch asks for it and
its state changed; the table's reads keep one parsed unit per stored text. What must hold:
a read always gives the latest state, and one bad record on the topic costs only itself.
"""

from __future__ import annotations

import logging

from dispatchwire.settings import Settings
from schemas import Unit, UnitType, encode
from schemas.geo import load_network
from streams.fleetview import FleetView
from streams.processing import decide_command
from streams.routing import GraphRouter
from tests.streams.test_fixes import AT, fix, registered

ROUTER = GraphRouter(load_network())


def state_text(unit_id: str, version: int, lat: float = 60.17) -> bytes:
    unit = Unit(
        id=unit_id,
        region="r",
        callsign=unit_id.upper(),
        type=UnitType.AMBULANCE,
        lat=lat,
        lon=24.94,
        version=version,
    )
    return unit.model_dump_json().encode()


def test_the_view_gives_each_units_newest_state_whatever_order_it_is_read_in():
    view = FleetView(Settings())
    view.put(state_text("u1", 2, lat=60.2), b"u1")
    view.put(state_text("u2", 1), b"u2")
    assert {(u.id, u.version) for u in view.units()} == {("u1", 2), ("u2", 1)}
    view.put(state_text("u1", 1, lat=60.1), b"u1")  # older: a redelivery, ignored
    view.put(state_text("u2", 3, lat=60.3), b"u2")  # newer, after a read: read again
    units = {u.id: u for u in view.units()}
    assert (units["u1"].version, units["u1"].lat) == (2, 60.2)
    assert (units["u2"].version, units["u2"].lat) == (3, 60.3)


def test_a_bad_record_on_the_units_topic_is_left_out_and_the_view_goes_on(caplog):
    view = FleetView(Settings())
    view.put(state_text("u1", 1), b"u1")
    with caplog.at_level(logging.WARNING, logger="streams.fleetview"):
        view.put(b"not json at all", b"u9")  # raised out of the view's reader before
        view.put(b'{"id": "u8", "version": 1}', b"u8")  # a version, but no unit state
        view.put(state_text("u3", 1), b"u7")  # another unit's state under this key
        view.put(state_text("u2", 1), b"u2")
        units = view.units()
    assert sorted(u.id for u in units) == ["u1", "u2"]
    assert sum("left out" in r.getMessage() for r in caplog.records) == 3
    assert sorted(u.id for u in view.units()) == ["u1", "u2"]  # said once, not at every read


def test_a_unit_read_from_the_table_is_its_latest_state_after_every_fix():
    state = registered()
    first = fix(0)
    before = state.unit("u1")
    assert before is state.unit("u1")  # the same stored text: the same parsed unit
    for n in range(1, 6):
        out = decide_command(state, ROUTER, 1.0, encode(fix(n, first)), AT + n, (0, 1 + n))
        assert out is not None
        unit = state.unit("u1")
        assert unit is not None and unit.version == 1 + n
        assert unit.lat == round(first.lat + n * 1e-5, 7)
    assert [u.version for u in state.fleet()] == [6]


def test_a_unit_the_worker_stored_is_read_back_without_a_parse():
    """The worker has the unit it stores in hand: the next read of the same text (the next
    fix of the unit, a dispatch reading the fleet) is that unit, not a parse of its text."""
    state = registered()
    first = fix(0)
    for n in range(1, 4):
        out = decide_command(state, ROUTER, 1.0, encode(fix(n, first)), AT + n, (0, 1 + n))
        assert out is not None
        assert state.unit("u1") is out.units[0]
        assert state.fleet()[0] is out.units[0]


def test_the_view_does_not_parse_what_the_table_already_holds_as_new():
    """A dispatch reads the table's units and, from the view, only units it lacks or holds
    older: a worker's own units (every one of them moving) are not parsed twice."""
    view = FleetView(Settings())
    for n, version in enumerate([3, 3, 5]):
        view.put(state_text(f"u{n}", version), f"u{n}".encode())
    # the table holds u0 at the view's version, u1 newer, u2 older; u3 is not in the view
    newer = view.units(known={"u0": 3, "u1": 4, "u2": 4, "u3": 1})
    assert [(u.id, u.version) for u in newer] == [("u2", 5)]
    assert set(view._parsed) == {"u2"}  # u0 and u1 were never parsed
    assert sorted((u.id, u.version) for u in view.units()) == [("u0", 3), ("u1", 3), ("u2", 5)]
