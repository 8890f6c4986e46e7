"""The auditor finds what it is there to find: each check, fed a log or a recording that
breaks it, reports the violation (so a green fault case means something)."""

from __future__ import annotations

import uuid

import pytest

from schemas import CommandRejectedEvent
from schemas.entities import UnitStatus
from schemas.events import event_id_for
from tests.api.helpers import EventLog
from tests.faults.auditor import Auditor, check_clients
from tests.faults.clients import Received, Recording
from tests.faults.driver import Attempt, SentCommand


def recording(*messages: tuple[str, str] | tuple[str, str, bool]) -> Recording:
    rec = Recording("c", "sse")
    rec.connections = 1
    for m in messages:
        rec.messages.append(Received(0, m[1], m[0], bool(m[2]) if len(m) > 2 else False))
    return rec


def test_contiguous_ids_and_forward_resets_are_clean() -> None:
    stats = check_clients(
        [
            recording(
                ("snapshot", "3.1"),
                ("emergency_created", "4.1"),
                ("unit_location", "4.2"),
                ("snapshot", "9.2", True),
                ("emergency_updated", "9.3"),
            )
        ]
    )
    assert (stats.gaps, stats.duplicates, stats.resets_behind, stats.problems) == (0, 0, 0, [])


@pytest.mark.parametrize(
    ("messages", "gaps", "duplicates", "behind"),
    [
        ([("snapshot", "3.1"), ("emergency_created", "5.1")], 1, 0, 0),
        (
            [("snapshot", "3.1"), ("emergency_created", "4.1"), ("emergency_created", "4.1")],
            0,
            1,
            0,
        ),
        (
            [
                ("snapshot", "3.1"),
                ("emergency_created", "4.1"),
                ("snapshot", "2.1", True),
                ("emergency_created", "3.1"),
                ("emergency_created", "4.1"),
                ("emergency_created", "5.1"),
            ],
            0,
            2,
            1,
        ),
    ],
)
def test_gaps_duplicates_and_resets_behind_are_counted(messages, gaps, duplicates, behind) -> None:
    stats = check_clients([recording(*messages)])
    assert (stats.gaps, stats.duplicates, stats.resets_behind) == (gaps, duplicates, behind)


def test_a_record_that_is_not_a_live_message_is_passed_over_not_a_gap() -> None:
    # partition 0 offset 3 is a command_repeated: the API sends it to no client
    messages = [("snapshot", "3.1"), ("emergency_created", "5.1"), ("unit_location", "7.1")]
    stats = check_clients([recording(*messages)], silent={0: {3}})
    assert (stats.gaps, stats.duplicates) == (1, 0)  # offset 5 was live: still a gap


def test_a_snapshot_without_reset_mid_stream_is_a_problem() -> None:
    stats = check_clients([recording(("snapshot", "3.1"), ("snapshot", "3.1"))])
    assert stats.problems


@pytest.mark.kafka
def test_the_log_checks_find_their_violations(settings) -> None:
    log = EventLog(settings)
    unit = log.unit(unit_id="u-twice").unit
    first, second = log.emergency(), log.emergency()
    log.assign(first, unit)
    log.assign(second, unit.model_copy(update={"version": unit.version}))  # the same unit again
    created = log.emergency(command_id="cmd-both")
    log.write(
        CommandRejectedEvent(
            event_id=event_id_for("cmd-both", 1),
            command_id="cmd-both",
            region="north",
            command_kind="report_emergency",
            reason="and rejected too",
        )
    )
    changed = created.model_copy(
        update={"emergency": created.emergency.model_copy(update={"description": "another body"})}
    )
    log.write(changed)  # same event id, another body
    log.write(created)  # an identical copy: a duplicate, not a second outcome
    log.unit(unit_id="u-free", status=UnitStatus.AVAILABLE)
    log.close()

    auditor = Auditor(settings)
    try:
        auditor.catch_up()
        sent = [
            SentCommand("cmd-both", "report", "/api/emergencies", {}, [Attempt(0.0, 201)]),
            SentCommand(
                f"lost-{uuid.uuid4().hex}", "report", "/api/emergencies", {}, [Attempt(0.0, 202)]
            ),
            SentCommand("never-acked", "report", "/api/emergencies", {}, [Attempt(0.0, 503)]),
        ]
        outcomes = auditor.outcomes(sent)
        assert (outcomes.sent, outcomes.acknowledged) == (3, 2)
        assert len(outcomes.lost) == 1 and outcomes.two_outcomes == ["cmd-both"]
        assert outcomes.duplicated == 2  # two more records of cmd-both:0
        assert auditor.divergent_event_ids() == [created.event_id]
        holds = auditor.double_holds()
        assert any("u-twice" in hold.text and "u-twice" in hold.ids for hold in holds)
        state = {"position": ".".join(map(str, auditor.position)), **auditor.fold().as_json()}
        assert auditor.api_state_differences(state) == []
        state["units"] = [u for u in state["units"] if u["id"] != "u-free"]
        assert auditor.api_state_differences(state) == ["unit u-free"]
    finally:
        auditor.close()
