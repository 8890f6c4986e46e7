"""Mutual aid (issue 15) as pure functions: ranking, coverage and the saga, no broker.

Each region's partition is a ``DispatchState`` of its own (a dict), and a tiny bus hands
every command the worker emits to the partition of its region, as the commands topic would.
The fleet view is the union of the other partitions' units, as ``streams.fleetview`` reads
it from ``dispatch.units``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import (
    CancelEmergency,
    CompleteEmergency,
    DispatchEmergency,
    EmergencyStatus,
    EmergencyType,
    RegisterUnit,
    ReportEmergency,
    SetUnitStatus,
    UnitStatus,
    UnitType,
)
from schemas.commands import AnswerReservation, ReleaseUnit, ReserveUnit
from schemas.events import CommandRejectedEvent, EmergencyUpdated, UnitStatusUpdate
from schemas.geo import load_network
from streams.decisions import HOLD_EXPIRY_S, Outcome, decide
from streams.processing import decide_command
from streams.ranking import DispatchPolicy
from streams.routing import GraphRouter
from streams.state import DispatchState
from tests.streams.world import FAR_STATION, INCIDENT, STATION

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ROUTER = GraphRouter(load_network())
REGIONS = ("hki-nw", "hki-ne", "hki-sw", "hki-se")
NEAR = STATION  # a few hundred metres from INCIDENT
FAR = FAR_STATION


class Fleet:
    """The other partitions' units: what the fleet view would hold."""

    def __init__(self, city: City) -> None:
        self.city = city

    def units(self, known=None):
        held = known or {}
        return [
            u
            for s in self.city.parts.values()
            for r in s.regions()
            for u in s.units_in_region(r)
            if held.get(u.id, -1) < u.version
        ]


class City:
    def __init__(self, policy: DispatchPolicy | None = None) -> None:
        self.policy = policy or DispatchPolicy(mutual_aid_regions=REGIONS)
        self.parts = {r: DispatchState({}, Fleet(self), self.policy) for r in REGIONS}
        self.log: list = []  # every event, in order
        self.queue: list = []  # emitted commands not yet delivered

    def run(self, cmd, after_s: float = 0.0) -> Outcome | None:
        """One command on its region's partition, through the worker's record check."""
        from schemas import encode

        state = self.parts[cmd.region]
        out = decide_command(state, ROUTER, 1.0, encode(cmd), NOW.timestamp() + after_s)
        if out is not None:
            self.log.extend(out.events)
            self.queue.extend(out.commands)
        return out

    def settle(self, limit: int = 50) -> list:
        """Deliver emitted commands until none is left; returns them in delivery order."""
        delivered = []
        while self.queue and limit:
            limit -= 1
            cmd = self.queue.pop(0)
            delivered.append(cmd)
            self.run(cmd)
        assert not self.queue, "the saga did not settle"
        return delivered

    def unit(self, region: str, unit_id: str):
        return self.parts[region].unit(unit_id)

    def add_unit(self, region, unit_id, at, kind=UnitType.AMBULANCE):
        self.run(
            RegisterUnit(
                region=region,
                unit_id=unit_id,
                callsign=unit_id.upper(),
                type=kind,
                lat=at[0],
                lon=at[1],
            )
        )

    def report(self, region="hki-se", at=INCIDENT, kind=EmergencyType.MEDICAL) -> str:
        cmd = ReportEmergency(region=region, type=kind, priority=1, lat=at[0], lon=at[1])
        self.run(cmd)
        return cmd.emergency_id


def outcome_of(city: City, command_id: str):
    """The visible outcome of a dispatch command: its assigned event or its rejection."""
    found = [
        e
        for e in city.log
        if e.command_id == command_id and isinstance(e, EmergencyUpdated | CommandRejectedEvent)
    ]
    assert len(found) == 1, found
    return found[0]


def test_closest_unit_of_another_region_is_reserved_then_assigned():
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    city.add_unit("hki-se", "se1", FAR)
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em)
    first = city.run(dispatch)
    assert first is not None and first.events == []  # the answer comes with the saga
    assert [type(c) for c in first.commands] == [ReserveUnit]
    steps = city.settle()
    assert [type(c) for c in steps] == [ReserveUnit, AnswerReservation]
    event = outcome_of(city, dispatch.command_id)
    assert isinstance(event, EmergencyUpdated) and event.action == "assigned"
    decision = event.dispatch
    assert decision.chosen_unit_id == "nw1"
    assert [(c.unit_id, c.region, c.cross_region) for c in decision.candidates] == [
        ("nw1", "hki-nw", True),
        ("se1", "hki-se", False),
    ]
    assert "closest by road" in decision.explanation and "mutual aid" in decision.explanation
    # the unit is written by its own region only, the emergency by its own
    assert city.unit("hki-nw", "nw1").status == UnitStatus.DISPATCHED
    assert city.unit("hki-nw", "nw1").emergency_region == "hki-se"
    assert city.parts["hki-se"].unit("nw1") is None
    em_state = city.parts["hki-se"].emergency(em)
    assert (em_state.status, em_state.assigned_unit_id, em_state.unit_region) == (
        EmergencyStatus.ASSIGNED,
        "nw1",
        "hki-nw",
    )
    reserved = [e for e in city.log if isinstance(e, UnitStatusUpdate) and e.mutual_aid]
    assert [e.mutual_aid for e in reserved] == ["reserved"]


def test_same_region_unit_keeps_the_one_step_path():
    city = City()
    city.add_unit("hki-se", "se1", NEAR)
    city.add_unit("hki-nw", "nw1", FAR)
    em = city.report("hki-se")
    out = city.run(DispatchEmergency(region="hki-se", emergency_id=em))
    assert out is not None and out.commands == []
    assert [e.event for e in out.events] == ["emergency_updated", "unit_status_update"]


def test_home_preference_is_seconds_of_eta_and_explained():
    city = City(DispatchPolicy(mutual_aid_regions=REGIONS, home_preference_s=3600))
    city.add_unit("hki-nw", "nw1", NEAR)
    city.add_unit("hki-se", "se1", FAR)
    em = city.report("hki-se")
    out = city.run(DispatchEmergency(region="hki-se", emergency_id=em))
    event = out.events[0]
    assert event.dispatch.chosen_unit_id == "se1"
    assert "3600 s ahead (home-region preference)" in event.dispatch.explanation


def test_taken_meanwhile_the_owner_refuses_and_the_next_candidate_is_tried():
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    city.add_unit("hki-ne", "ne1", FAR)
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em)
    city.run(dispatch)
    # before the reservation arrives, hki-nw's own emergency takes nw1 (a stale view)
    own = city.report("hki-nw")
    city.run(DispatchEmergency(region="hki-nw", emergency_id=own))
    assert city.unit("hki-nw", "nw1").emergency_id == own
    city.settle()
    refused = [e for e in city.log if isinstance(e, CommandRejectedEvent) and "refused" in e.reason]
    assert len(refused) == 1 and refused[0].unit_id == "nw1"
    event = outcome_of(city, dispatch.command_id)
    assert isinstance(event, EmergencyUpdated) and event.dispatch.chosen_unit_id == "ne1"
    assert "tried first: nw1" in event.dispatch.explanation
    assert city.unit("hki-nw", "nw1").emergency_id == own  # never taken twice


def test_nothing_free_anywhere_is_rejected_with_the_city_wide_reason():
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    city.run(SetUnitStatus(region="hki-nw", unit_id="nw1", status=UnitStatus.OUT_OF_SERVICE))
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em)
    city.run(dispatch)
    event = outcome_of(city, dispatch.command_id)
    assert isinstance(event, CommandRejectedEvent)
    assert "no available ambulance in any region" in event.reason


def test_cancelled_before_the_answer_releases_the_reserved_unit():
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em)
    city.run(dispatch)
    city.run(city.queue.pop(0))  # reserved on hki-nw
    assert city.unit("hki-nw", "nw1").status == UnitStatus.DISPATCHED
    city.run(CancelEmergency(region="hki-se", emergency_id=em))  # before the answer
    steps = city.settle()
    assert [type(c) for c in steps] == [AnswerReservation, ReleaseUnit]
    assert city.unit("hki-nw", "nw1").emergency_id is None
    released = [
        e for e in city.log if isinstance(e, UnitStatusUpdate) and e.mutual_aid == "released"
    ]
    assert len(released) == 1 and "CANCELLED" in released[0].reason
    assert isinstance(outcome_of(city, dispatch.command_id), CommandRejectedEvent)


@pytest.mark.parametrize("close", [CompleteEmergency, CancelEmergency])
def test_closing_frees_the_foreign_unit_on_its_owner(close):
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    em = city.report("hki-se")
    city.run(DispatchEmergency(region="hki-se", emergency_id=em))
    city.settle()
    out = city.run(close(region="hki-se", emergency_id=em))
    assert [type(c) for c in out.commands] == [ReleaseUnit]
    assert out.units == []  # hki-se never writes hki-nw's unit
    city.settle()
    unit = city.unit("hki-nw", "nw1")
    assert unit.emergency_id is None and unit.status in (UnitStatus.RETURNING, UnitStatus.AVAILABLE)


def test_every_saga_step_is_idempotent_by_command_id():
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    city.add_unit("hki-ne", "ne1", FAR)
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em)
    city.run(dispatch)
    steps = city.settle()
    before = {r: dict(p.table) for r, p in city.parts.items()}
    log_len = len(city.log)
    for cmd in [dispatch, *steps]:  # all redelivered, as after a crash
        again = city.run(cmd)
        assert again is not None
    # the records answer: same events re-published, no state changed, no new command id
    assert {r: dict(p.table) for r, p in city.parts.items()} == before
    redelivered = city.log[log_len:]
    assert {e.event_id for e in redelivered} <= {e.event_id for e in city.log[:log_len]}
    assert [c.command_id for c in city.queue] == [c.command_id for c in steps]
    city.settle()  # the re-sent steps are recognised too
    assert {r: dict(p.table) for r, p in city.parts.items()} == before


def test_override_takes_another_regions_unit_through_the_saga():
    city = City()
    city.add_unit("hki-se", "se1", NEAR)
    city.add_unit("hki-nw", "nw1", FAR)
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em, unit_id="nw1")
    city.run(dispatch)
    city.settle()
    event = outcome_of(city, dispatch.command_id)
    assert event.dispatch.chosen_unit_id == "nw1" and event.dispatch.overridden
    assert "dispatcher's override" in event.dispatch.explanation


def test_coverage_prefers_a_unit_that_keeps_its_region_covered():
    city = City(DispatchPolicy(mutual_aid_regions=REGIONS, coverage_margin_s=3600))
    city.add_unit("hki-nw", "nw1", NEAR)  # the last ambulance of hki-nw
    city.add_unit("hki-ne", "ne1", FAR)
    city.add_unit("hki-ne", "ne2", FAR)
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em)
    city.run(dispatch)
    city.settle()
    decision = outcome_of(city, dispatch.command_id).dispatch
    assert decision.chosen_unit_id in ("ne1", "ne2")
    assert "sending NW1 leaves hki-nw without an ambulance" in decision.explanation
    assert decision.leaves_uncovered is None


def test_coverage_warns_when_no_unit_within_the_margin_keeps_it():
    city = City(DispatchPolicy(mutual_aid_regions=REGIONS, coverage_margin_s=0))
    city.add_unit("hki-nw", "nw1", NEAR)
    city.add_unit("hki-ne", "ne1", FAR)
    city.add_unit("hki-ne", "ne2", FAR)
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em)
    city.run(dispatch)
    city.settle()
    decision = outcome_of(city, dispatch.command_id).dispatch
    assert decision.chosen_unit_id == "nw1"
    assert decision.leaves_uncovered == "hki-nw"
    assert "leaves hki-nw without an ambulance" in decision.explanation


def test_regions_outside_the_city_dispatch_only_inside_themselves():
    state = DispatchState({})  # no mutual-aid regions: today's rule
    for cmd in (
        RegisterUnit(
            region="a",
            unit_id="a1",
            callsign="A1",
            type=UnitType.AMBULANCE,
            lat=NEAR[0],
            lon=NEAR[1],
        ),
    ):
        state.apply(decide(cmd, state, ROUTER, NOW))
    report = ReportEmergency(
        region="b", type=EmergencyType.MEDICAL, priority=1, lat=INCIDENT[0], lon=INCIDENT[1]
    )
    state.apply(decide(report, state, ROUTER, NOW))
    out = decide(
        DispatchEmergency(region="b", emergency_id=report.emergency_id), state, ROUTER, NOW
    )
    assert out.rejected and "in region b" in out.events[0].reason


def test_a_foreign_unit_arriving_turns_the_emergency_on_scene_where_it_is_owned():
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    em = city.report("hki-se")
    city.run(DispatchEmergency(region="hki-se", emergency_id=em))
    city.settle()
    out = city.run(SetUnitStatus(region="hki-nw", unit_id="nw1", status=UnitStatus.ON_SCENE))
    assert out.emergencies == []  # hki-nw never writes hki-se's emergency
    city.settle()
    assert city.parts["hki-se"].emergency(em).status == EmergencyStatus.ON_SCENE
    assert city.unit("hki-nw", "nw1").status == UnitStatus.ON_SCENE
    city.run(CompleteEmergency(region="hki-se", emergency_id=em))
    city.settle()
    assert city.unit("hki-nw", "nw1").emergency_id is None


def test_a_second_dispatch_while_a_reservation_is_out_is_refused_until_it_is_answered():
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    city.add_unit("hki-ne", "ne1", FAR)
    em = city.report("hki-se")
    first = DispatchEmergency(region="hki-se", emergency_id=em)
    city.run(first)
    second = DispatchEmergency(region="hki-se", emergency_id=em)  # a double click
    out = city.run(second)
    assert out.rejected and "being reserved for this emergency" in out.events[0].reason
    assert out.commands == []  # no second unit is reserved for it
    city.settle()
    assert outcome_of(city, first.command_id).action == "assigned"
    engaged = [
        u
        for p in city.parts.values()
        for r in p.regions()
        for u in p.units_in_region(r)
        if u.emergency_id == em
    ]
    assert [u.id for u in engaged] == ["nw1"]
    assert city.parts["hki-se"].hold(em) is None


def test_a_hold_whose_answer_never_comes_expires():
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    city.add_unit("hki-ne", "ne1", FAR)
    em = city.report("hki-se")
    city.run(DispatchEmergency(region="hki-se", emergency_id=em))
    city.queue.clear()  # the reservation is lost (never delivered)
    late = DispatchEmergency(region="hki-se", emergency_id=em)
    out = city.run(late, after_s=HOLD_EXPIRY_S + 1)
    assert not out.rejected and [type(c) for c in out.commands] == [ReserveUnit]


def test_a_list_write_a_crash_cut_off_is_finished_by_the_redelivered_record():
    """A crash between a registration's ``u:`` and ``r:`` writes: the redelivered command
    finds its record, re-stores a unit that is not newer, and must still list it (found by
    test_crash_recovery: the region's dispatch never saw the unit again)."""
    city = City()
    register = RegisterUnit(
        region="hki-se",
        unit_id="se1",
        callsign="SE1",
        type=UnitType.AMBULANCE,
        lat=NEAR[0],
        lon=NEAR[1],
    )
    city.run(register)
    part = city.parts["hki-se"]
    del part.table["r:hki-se"]  # the changelog write that did not get out
    city.run(register)  # redelivered after the restart
    assert [u.id for u in part.units_in_region("hki-se")] == ["se1"]
    em = city.report("hki-se")
    out = city.run(DispatchEmergency(region="hki-se", emergency_id=em))
    assert out.commands == [] and part.unit("se1").emergency_id == em  # the one-step path


def test_a_home_unit_comes_from_the_table_even_when_the_view_holds_a_newer_copy():
    """After a crash the fleet view can be ahead of the table (a lost write about to be made
    again); a unit of the emergency's own region is assigned without a reservation, so the
    table must decide, or one unit version goes to two emergencies."""
    city = City()
    city.add_unit("hki-se", "se1", NEAR)
    first = city.report("hki-se")
    city.run(DispatchEmergency(region="hki-se", emergency_id=first))
    part = city.parts["hki-se"]
    taken = part.unit("se1")
    assert taken.status == UnitStatus.DISPATCHED
    ahead = taken.model_copy(
        update={"version": taken.version + 1, "status": UnitStatus.AVAILABLE, "emergency_id": None}
    )

    class AheadView:
        def units(self, known=None):
            return [ahead]  # newer than the table's copy, whatever it holds

    part.fleet_view = AheadView()
    second = city.report("hki-se")
    out = city.run(DispatchEmergency(region="hki-se", emergency_id=second))
    assert out.rejected, out.events
    assert part.unit("se1").emergency_id == first


def test_the_citys_regions_do_not_depend_on_the_one_stored_region_list():
    """A worker recovering several partitions keeps whichever partition's copy of the
    ``regions`` key it applied last; a city region missing from it must still be served
    (its dispatched units moved, its units ranked)."""
    city = City()
    city.add_unit("hki-se", "se1", NEAR)
    city.add_unit("hki-nw", "nw1", FAR)
    em = city.report("hki-se")
    city.run(DispatchEmergency(region="hki-se", emergency_id=em))
    # one table holding both partitions, recovered with hki-nw's copy of the list last
    table = {**city.parts["hki-nw"].table, **city.parts["hki-se"].table}
    table["regions"] = '["hki-nw"]'
    recovered = DispatchState(table, None, city.policy)
    assert [u.id for u in recovered.moving_units()] == ["se1"]
    assert {u.id for u in recovered.fleet()} == {"se1", "nw1"}
