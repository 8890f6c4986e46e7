"""The read model's two helpers on their own: the resume ring and the command outcomes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from api.broadcast import build_message
from api.outcomes import Outcomes
from api.ring import ResumeRing
from schemas.entities import Emergency, EmergencyType
from schemas.events import CommandRejectedEvent, EmergencyCreated


def created_event(command_id: str) -> EmergencyCreated:
    emergency = Emergency(
        id=f"e-{command_id}",
        region="r",
        type=EmergencyType.MEDICAL,
        priority=1,
        lat=60.17,
        lon=24.94,
        reported_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return EmergencyCreated(
        event_id=f"{command_id}:0", command_id=command_id, region="r", emergency=emergency
    )


def message(partition: int, offset: int):
    return build_message(
        "unit_location",
        f"{partition}.{offset}",
        "{}",
        partition=partition,
        offset=offset,
        region="r",
    )


def test_the_ring_returns_what_came_after_a_position_until_it_left_the_ring():
    ring = ResumeRing(3)
    ring.resize(2)
    for partition, offset in [(0, 0), (1, 0), (0, 1)]:
        ring.remember(message(partition, offset))
    assert [(m.partition, m.offset) for m in ring.since((1, 0))] == [(1, 0), (0, 1)]
    assert ring.since((2, 1)) == []
    ring.remember(message(1, 1))  # (0, 0) leaves the ring
    assert ring.since((0, 0)) is None
    assert [(m.partition, m.offset) for m in ring.since((1, 1))] == [(0, 1), (1, 1)]


def test_a_log_that_begins_later_is_not_missing_anything():
    ring = ResumeRing(10)
    ring.resize(1)
    ring.starts_at(0, 5)
    assert ring.since((4,)) is None
    assert ring.since((5,)) == []


def test_outcomes_settle_waiters_and_answer_a_recent_command_at_once():
    async def run() -> None:
        outcomes = Outcomes(recent=1)
        created = created_event("c-1")
        waiting = outcomes.expect("c-1", (EmergencyCreated,))
        assert not waiting.done()
        outcomes.settle(created)
        assert waiting.result() is created
        assert outcomes.expect("c-1", (EmergencyCreated,)).result() is created
        assert not outcomes.expect("c-1", (EmergencyCreated,), recent=False).done()
        rejected = CommandRejectedEvent(
            event_id="c-2:0",
            command_id="c-2",
            region="r",
            command_kind="dispatch",
            reason="no unit",
        )
        outcomes.settle(rejected)  # c-1 leaves the recent outcomes (recent=1)
        assert not outcomes.expect("c-1", (EmergencyCreated,)).done()
        assert outcomes.expect("c-2", (EmergencyCreated,)).result() is rejected

    asyncio.run(run())


def test_a_forgotten_future_is_not_settled():
    async def run() -> None:
        outcomes = Outcomes()
        future = outcomes.expect("c-1", (EmergencyCreated,))
        outcomes.forget("c-1", future)
        outcomes.settle(created_event("c-1"))
        assert not future.done()

    asyncio.run(run())
