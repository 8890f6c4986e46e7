"""A mutual-aid hold (``h:<emergency_id>``) leaves the worker's table with its emergency
(issue 16, part 1): an answered hold used to stay as ``"null"`` forever, one key per
cross-region dispatch ever made, so the changelog grew with history."""

from __future__ import annotations

from datetime import timedelta

from streams.decisions import Outcome
from tests.streams.test_archive_decisions import T0, closed, sweep, world


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
