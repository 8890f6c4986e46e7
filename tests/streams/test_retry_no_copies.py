"""Issue 16: a retried command (same command id, a new message) is answered from its record
with one ``command_repeated`` and puts no copy of its events into ``dispatch.events``; the
same message redelivered after a crash still re-publishes them (``streams.processing``)."""

from __future__ import annotations

import pytest

from schemas import DispatchEmergency, UnitPosition, encode
from schemas.events import CommandRepeated, EmergencyUpdated
from schemas.geo import load_network
from streams.processing import decide_command
from streams.routing import GraphRouter
from streams.state import DispatchState
from tests.streams.world import STATION, World, medical_report, unit_u1

ROUTER = GraphRouter(load_network())
AT = 1_735_732_800.0  # 2025-01-01 12:00 UTC


def dispatched_state() -> tuple[DispatchState, DispatchEmergency, list[str]]:
    """A unit and a report, then a dispatch read at partition 0, offset 10."""
    state = DispatchState({})
    decide_command(state, ROUTER, 1.0, encode(unit_u1()), AT, (0, 1))
    report = medical_report(priority=1)
    decide_command(state, ROUTER, 1.0, encode(report), AT, (0, 2))
    dispatch = DispatchEmergency(command_id="d-1", region="r", emergency_id=report.emergency_id)
    first = decide_command(state, ROUTER, 1.0, encode(dispatch), AT, (0, 10))
    assert first is not None and isinstance(first.events[0], EmergencyUpdated)
    return state, dispatch, [e.event_id for e in first.events]


def test_a_later_message_with_the_same_command_id_is_answered_with_command_repeated():
    state, dispatch, event_ids = dispatched_state()
    table = dict(state.table)
    # a client's retry: the same command (a new issued_at), a later message of the partition
    retry = dispatch.model_copy(update={"issued_at": dispatch.issued_at.replace(year=2026)})
    answer = decide_command(state, ROUTER, 1.0, encode(retry), AT + 5, (0, 42))
    assert answer is not None and len(answer.events) == 1
    repeated = answer.events[0]
    assert isinstance(repeated, CommandRepeated)
    assert repeated.command_id == "d-1" and repeated.event_ids == event_ids
    assert repeated.event_id == "d-1:repeated-42"
    assert answer.emergencies == [] and answer.units == []
    assert state.table == table  # nothing written: a retry adds nothing to the table
    # the same retry message redelivered (a crash after it): the same repeat, same id
    again = decide_command(state, ROUTER, 1.0, encode(retry), AT + 5, (0, 42))
    assert again is not None and again.events == answer.events


def test_the_same_message_again_is_a_crash_replay_and_re_publishes_the_record():
    state, dispatch, event_ids = dispatched_state()
    replay = decide_command(state, ROUTER, 1.0, encode(dispatch), AT, (0, 10))
    assert replay is not None
    assert [e.event_id for e in replay.events] == event_ids
    assert isinstance(replay.events[0], EmergencyUpdated)
    # a message the record cannot be ordered against (another partition, or an earlier
    # offset read during a replay) is treated the safe way: re-published
    for source in [(1, 50), (0, 5)]:
        other = decide_command(state, ROUTER, 1.0, encode(dispatch), AT, source)
        assert other is not None and [e.event_id for e in other.events] == event_ids


def test_a_movement_tick_sent_again_later_publishes_nothing():
    state, _, _ = dispatched_state()
    unit = state.unit("u1")
    assert unit is not None
    tick = UnitPosition(
        command_id="mv-1", region="r", unit_id="u1", tick=unit.version, issued_by="worker"
    )
    moved = decide_command(state, ROUTER, 1.0, encode(tick), AT + 1, (0, 20))
    assert moved is not None and [e.event for e in moved.events] == ["unit_location"]
    assert decide_command(state, ROUTER, 1.0, encode(tick), AT + 6, (0, 30)) is None
    replay = decide_command(state, ROUTER, 1.0, encode(tick), AT + 1, (0, 20))
    assert replay is not None and replay.events == moved.events


@pytest.mark.kafka
def test_twenty_sends_of_one_dispatch_put_one_copy_in_the_log(shared_worker, commands, event_log):
    world = World(commands, event_log)
    unit_id = world.register(STATION)
    emergency_id = world.report()
    dispatch = world.dispatch(emergency_id)
    first = world.run(dispatch)
    assert [e.event for e in first] == ["emergency_updated", "unit_status_update"], first
    # 19 retries, each a new message (the API makes a new command with the client's id)
    retries = [
        dispatch.model_copy(update={"issued_at": dispatch.issued_at.replace(microsecond=n)})
        for n in range(1, 20)
    ]
    commands.send_all(retries)
    # every send answered: its events once, then one event per retry (a copy or a repeat)
    answered = event_log.wait_command(dispatch.command_id, count=len(first) + 19, timeout=60)
    updated = [e for e in answered if isinstance(e, EmergencyUpdated)]
    repeats = [e for e in answered if isinstance(e, CommandRepeated)]
    assert len(updated) == 1, f"{len(updated)} copies of {dispatch.command_id}'s emergency_updated"
    assert len(answered) == len(first) + 19
    assert len(repeats) == 19 and len({e.event_id for e in repeats}) == 19
    assert all(e.event_ids == [f.event_id for f in first] for e in repeats)
    # and the retries changed nothing: the unit is still on this one emergency
    state = shared_worker.state()
    unit = next(u for u in state["units"] if u["id"] == unit_id)
    assert unit["emergency_id"] == emergency_id and unit["version"] == first[0].unit.version  # type: ignore[union-attr]
