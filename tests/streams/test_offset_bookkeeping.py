"""Faust's committed-offset bookkeeping follows the group's, not its own attempts
(``streams/offsets.py``, ``seek_to_committed`` and ``forget_stale_commit``).

Found with ``tests/streams/test_lease_fence.py``: a worker's first commit was held, failed,
and was recorded by Faust anyway after the revocation cleared its bookkeeping; the rejoined
worker believed offset 1 committed where the group had nothing, so the seek after its
recovery neither moved the partition back nor sent it to its start, and the command at
offset 1, fetched while its flow was stopped, was not delivered until a later rebalance.
Here a consumer stand-in runs the patched ``perform_seek`` and ``_commit_offsets`` of
Faust's own ``Consumer`` class against answers the test chooses.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.types import TP

from streams import offsets

COMMANDS = TP("t.dispatch.commands", 0)
OTHER = TP("t.dispatch.commands", 1)
CHANGELOG = TP("t-dispatch-state-changelog", 0)


class StandIn:
    """What the patched methods read and call on a Faust consumer; ``group`` is what the
    group has committed (``None``: nothing), ``commit_rebalances`` makes a commit outlast
    a rebalance."""

    def __init__(self, group: dict[TP, int | None]) -> None:
        self.group = group
        self.flow_active = True
        self.seeks: list[tuple[TP, int]] = []
        self._read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self.commit_rebalances = False
        self.app = SimpleNamespace(
            rebalancing_count=0,
            consumer_generation_id=3,
            topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == COMMANDS.topic),
            producer=SimpleNamespace(flush=self._nothing),
            tables=SimpleNamespace(on_commit=lambda offsets: None),
            monitor=SimpleNamespace(on_tp_commit=lambda offsets: None),
        )
        self.in_transaction = False
        self.log = SimpleNamespace(dev=self._log, info=self._log, warning=self._log)

    @staticmethod
    def _log(*args: Any, **kwargs: Any) -> None:
        return None

    @staticmethod
    async def _nothing() -> None:
        return None

    def stop_flow(self) -> None:
        self.flow_active = False

    def resume_flow(self) -> None:
        self.flow_active = True

    def assignment(self) -> set[TP]:
        return set(self.group)

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return dict(self.group)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._read_offset[tp] = offset if offset else None

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        if self.commit_rebalances:  # held until a rebalance and a new seek, then failed
            self.app.consumer_generation_id += 1
            self._committed_offset.clear()
            await faust_consumer.Consumer.perform_seek(self)
            return False
        self.group.update(offsets)
        return True


def perform_seek(consumer: StandIn) -> None:
    offsets.install()
    asyncio.run(faust_consumer.Consumer.perform_seek(consumer))


def test_a_partition_the_group_has_not_committed_forgets_the_offset_faust_believed() -> None:
    consumer = StandIn({COMMANDS: None, OTHER: 7, CHANGELOG: None})
    consumer._committed_offset[COMMANDS] = 1  # a failed commit, recorded anyway
    perform_seek(consumer)
    assert not consumer._committed_offset.get(COMMANDS)
    assert consumer._committed_offset[OTHER] == 7
    assert consumer._read_offset[OTHER] == 7
    # the stream partition with nothing committed goes to its start; the changelog stays
    assert consumer.seeks == [(COMMANDS, 0)]
    assert not consumer.flow_active  # stopped for the seek (repair 1); its caller resumes it
    perform_seek(consumer)  # (and with the flow already stopped, the same)
    assert consumer.seeks == [(COMMANDS, 0), (COMMANDS, 0)]


def test_a_partition_committed_at_zero_goes_to_its_start_too() -> None:
    consumer = StandIn({COMMANDS: 0})
    consumer._committed_offset[COMMANDS] = 4
    perform_seek(consumer)
    assert not consumer._committed_offset.get(COMMANDS)
    assert consumer.seeks == [(COMMANDS, 0)]


def test_a_commit_that_outlasts_a_rebalance_leaves_the_new_seeks_offsets() -> None:
    offsets.install()
    consumer = StandIn({COMMANDS: 5, OTHER: None})
    perform_seek(consumer)
    consumer.commit_rebalances = True
    did = asyncio.run(faust_consumer.Consumer._commit_offsets(consumer, {COMMANDS: 9, OTHER: 2}))
    assert did is False
    # Faust records 9 and 2 as committed when the call returns; the group has 5 and nothing
    assert consumer._committed_offset[COMMANDS] == 5
    assert not consumer._committed_offset.get(OTHER)


def test_a_commit_within_its_generation_is_recorded_as_faust_does() -> None:
    offsets.install()
    consumer = StandIn({COMMANDS: 5})
    perform_seek(consumer)
    assert asyncio.run(faust_consumer.Consumer._commit_offsets(consumer, {COMMANDS: 9})) is True
    assert consumer._committed_offset[COMMANDS] == 9


class Positions:
    """aiokafka's consumer as ``streams.offsets.positions`` reads it: each partition's
    position (a partition not in ``at`` is not assigned)."""

    def __init__(self, at: dict[TP, int]) -> None:
        self.at = at
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=self))

    def _ensure_consumer(self) -> Positions:
        return self

    def state_value(self, tp: TP) -> Any:
        return SimpleNamespace(_position=self.at[tp]) if tp in self.at else None


def fetch(tp: TP, first: int, last: int) -> list[Any]:
    return [SimpleNamespace(offset=offset) for offset in range(first, last + 1)]


def test_records_fetched_and_not_handed_on_are_fetched_again() -> None:
    consumer = StandIn({COMMANDS: None, CHANGELOG: None, OTHER: None})
    aiokafka = Positions({COMMANDS: 15, CHANGELOG: 8, OTHER: 30})
    consumer._thread = aiokafka  # type: ignore[attr-defined]
    fetched = {COMMANDS: fetch(COMMANDS, 10, 14), CHANGELOG: fetch(CHANGELOG, 0, 7)}
    fetched[OTHER] = fetch(OTHER, 20, 21)
    fetched_to = offsets.positions(consumer, fetched)
    assert fetched_to == {COMMANDS: 15, CHANGELOG: 8, OTHER: 30}
    aiokafka.at[OTHER] = 3  # sought elsewhere since the fetch: that seek knows better
    # the flow stopped after offset 11 of the commands; no changelog record was handed on
    asyncio.run(offsets.give_back(consumer, fetched, fetched_to, {COMMANDS: 11}))
    assert consumer.seeks == [(COMMANDS, 12), (CHANGELOG, 0)]


def test_a_fetch_handed_on_whole_or_revoked_is_left_alone() -> None:
    consumer = StandIn({COMMANDS: None})
    consumer._thread = Positions({COMMANDS: 15})  # type: ignore[attr-defined]
    fetched = {COMMANDS: fetch(COMMANDS, 10, 14), CHANGELOG: fetch(CHANGELOG, 0, 7)}
    fetched_to = {COMMANDS: 15, CHANGELOG: 8}  # the changelog partition revoked since
    asyncio.run(offsets.give_back(consumer, fetched, fetched_to, {COMMANDS: 14}))
    assert consumer.seeks == []
