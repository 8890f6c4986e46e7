"""Archiving closed emergencies (issue 16), as pure decisions against a dict-backed table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas import CompleteEmergency, DispatchEmergency, EmergencyStatus, ReportEmergency
from schemas.commands import ArchiveClosed, CancelEmergency
from schemas.events import EmergencyArchived
from schemas.geo import load_network
from schemas.projection import Projection
from streams.decisions import Outcome, decide
from streams.routing import GraphRouter
from streams.state import DispatchState, outcome_from_json, record_text
from tests.streams.world import medical_report, unit_u1

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0
ROUTER = GraphRouter(load_network())


def run(state: DispatchState, cmd: object, at: datetime) -> Outcome:
    outcome = decide(cmd, state, ROUTER, at)  # type: ignore[arg-type]
    state.apply(outcome)
    return outcome


def world() -> tuple[DispatchState, dict]:
    table: dict = {}
    state = DispatchState(table)
    run(state, unit_u1(), T0)
    return state, table


def report(state: DispatchState, at: datetime, command_id: str) -> ReportEmergency:
    cmd = medical_report(command_id=command_id)
    run(state, cmd, at)
    return cmd


def closed(state: DispatchState, at: datetime, command_id: str) -> ReportEmergency:
    cmd = report(state, at, command_id)
    run(state, DispatchEmergency(region="r", emergency_id=cmd.emergency_id), at)
    run(state, CompleteEmergency(region="r", emergency_id=cmd.emergency_id), at)
    return cmd


def sweep(state: DispatchState, at: datetime, memory_s: float | None = None) -> Outcome:
    return run(state, ArchiveClosed(region="r", after_s=HOUR, forget_after_s=memory_s), at)


def test_closed_emergencies_are_archived_after_the_window_only() -> None:
    state, table = world()
    early = closed(state, T0, "c-early")
    late = closed(state, T0 + timedelta(minutes=50), "c-late")
    still_open = report(state, T0, "c-open")
    cancelled = report(state, T0, "c-cancel")
    run(state, CancelEmergency(region="r", emergency_id=cancelled.emergency_id), T0)

    assert sweep(state, T0 + timedelta(minutes=59)).events == []
    outcome = sweep(state, T0 + timedelta(minutes=61))

    archived = [e for e in outcome.events if isinstance(e, EmergencyArchived)]
    assert sorted(e.emergency_id for e in archived) == sorted(
        [early.emergency_id, cancelled.emergency_id]
    )
    assert {e.status for e in archived} == {EmergencyStatus.COMPLETED, EmergencyStatus.CANCELLED}
    assert all(e.occurred_at == T0 + timedelta(minutes=61) for e in archived)
    # gone from the table, the others stay
    assert f"e:{early.emergency_id}" not in table
    assert f"e:{cancelled.emergency_id}" not in table
    assert state.emergency(late.emergency_id) is not None
    assert state.emergency(still_open.emergency_id) is not None
    assert [e.id for e in state.closed_in_region("r")] == [late.emergency_id]
    # the next sweep, later, takes the other one; a repeat finds nothing
    assert [e.emergency_id for e in sweep(state, T0 + timedelta(hours=2)).events] == [
        late.emergency_id
    ]
    assert sweep(state, T0 + timedelta(hours=2)).events == []
    assert state.sweep_regions() == []


def test_a_redelivered_report_does_not_bring_an_archived_emergency_back() -> None:
    state, table = world()
    first = run(state, medical_report(command_id="c-1"), T0)
    record = record_text("c-1", first)
    eid = first.emergencies[0].id
    run(state, DispatchEmergency(region="r", emergency_id=eid), T0)
    run(state, CompleteEmergency(region="r", emergency_id=eid), T0)
    sweep(state, T0 + timedelta(hours=2))
    assert f"e:{eid}" not in table

    state.apply(outcome_from_json(record))  # the record's redelivery (a client's late retry)
    assert f"e:{eid}" not in table
    # a new command naming the archived id is refused, not a second emergency
    again = medical_report(command_id="c-2", emergency_id=eid)
    outcome = run(state, again, T0 + timedelta(hours=3))
    assert outcome.rejected
    assert "archived" in outcome.events[0].reason  # type: ignore[union-attr]


def test_archive_markers_are_forgotten_after_the_memory_window() -> None:
    state, table = world()
    old = closed(state, T0, "c-old")
    sweep(state, T0 + timedelta(hours=2), memory_s=24 * HOUR)
    assert state.archived_at(old.emergency_id) is not None
    new = closed(state, T0 + timedelta(days=2), "c-new")
    sweep(state, T0 + timedelta(days=2, hours=2), memory_s=24 * HOUR)
    assert state.archived_at(old.emergency_id) is None
    assert state.archived_at(new.emergency_id) is not None
    assert [k for k in table if k.startswith("a:")] == [f"a:{new.emergency_id}"]
    # the day lists of forgotten markers went with them (tombstones, not empty lists)
    assert sorted(k for k in table if k.startswith("y:")) == ["y:r", "y:r:2026-01-03"]


def test_the_fold_drops_archived_emergencies_and_ignores_their_older_events() -> None:
    state, _ = world()
    created = run(state, medical_report(command_id="c-1"), T0)
    eid = created.emergencies[0].id
    events = [*created.events]
    for cmd in (
        DispatchEmergency(region="r", emergency_id=eid),
        CompleteEmergency(region="r", emergency_id=eid),
    ):
        events += run(state, cmd, T0).events
    events += sweep(state, T0 + timedelta(hours=2)).events
    projection = Projection(archive_memory=timedelta(days=1)).apply_all(events)
    assert eid not in projection.emergencies
    assert projection.archived[eid].status == EmergencyStatus.COMPLETED
    projection.apply(created.events[0])  # a re-published copy of the report
    assert eid not in projection.emergencies
    assert "u1" in projection.units
