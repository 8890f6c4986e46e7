"""A mutual-aid hold (``h:<emergency_id>``) leaves the worker's table with its emergency
(issue 16, part 1): an answered hold used to stay as ``"null"`` forever, one key per
cross-region dispatch ever made, so the changelog grew with history."""

from __future__ import annotations

from datetime import timedelta

from schemas import CompleteEmergency, DispatchEmergency
from schemas.commands import ArchiveClosed
from streams.decisions import Outcome
from tests.streams.test_archive_decisions import T0, closed, sweep, world
from tests.streams.test_mutual_aid_rules import NEAR, City


def test_an_archived_emergency_takes_its_hold_with_it() -> None:
    state, table = world()
    answered = closed(state, T0, "c-answered")
    unanswered = closed(state, T0, "c-unanswered")
    state.apply(Outcome(holds={answered.emergency_id: ("saga-1", T0)}))
    state.apply(Outcome(holds={answered.emergency_id: None}))  # the reservation's answer
    state.apply(Outcome(holds={unanswered.emergency_id: ("saga-2", T0)}))  # lost saga
    assert f"h:{answered.emergency_id}" in table
    assert state.hold(unanswered.emergency_id) is not None

    sweep(state, T0 + timedelta(hours=2))

    assert state.emergency(answered.emergency_id) is None
    assert [k for k in table if k.startswith("h:")] == []


def test_a_saga_redelivered_after_its_emergency_was_archived_leaves_no_hold() -> None:
    """Every step of a finished cross-region dispatch delivered again after the emergency
    was archived and the command records had expired (a replay from old offsets): each one
    is decided anew against a table without the emergency, and none may write a hold for it
    (a key nothing would ever delete again), nor keep the foreign unit."""
    city = City()
    city.add_unit("hki-nw", "nw1", NEAR)
    em = city.report("hki-se")
    dispatch = DispatchEmergency(region="hki-se", emergency_id=em)
    city.run(dispatch)
    steps = city.settle()
    city.run(CompleteEmergency(region="hki-se", emergency_id=em))
    city.settle()
    city.run(ArchiveClosed(region="hki-se", after_s=60.0), after_s=3600.0)
    home = city.parts["hki-se"]
    assert home.emergency(em) is None and f"h:{em}" not in home.table
    for part in city.parts.values():  # the record window passed (what expire_records does)
        for key in [k for k in part.table if k.startswith("c:")]:
            del part.table[key]

    for cmd in [dispatch, *steps]:
        city.run(cmd, after_s=7200.0)
    city.settle()

    assert [k for p in city.parts.values() for k in p.table if k.startswith("h:")] == []
    assert home.emergency(em) is None
    assert city.unit("hki-nw", "nw1").emergency_id is None
