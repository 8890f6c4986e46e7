"""Repairs to Faust's offset bookkeeping: the first two for issue 10, item 2; 3 and 4 since.

Faust commits, per partition, the end of the first run of consecutive offsets in its acked
list (``Consumer._new_offset``). After a worker restart under load the probe saw one commands
partition's committed offset advance by one per commit interval while 600-1,500 records sat
uncommitted: the acked list held every offset twice (``[12489, 12490, 12490, 12491, ...]``),
and each duplicate ends a run.

Where the duplicates come from (seen with a debug timer in ``tests/streams/
test_offsets_after_restart.py``). A freshly started consumer's flow was never stopped (only a
revocation stops it), and Faust's table recovery resumes the stream partitions *before* it
awaits ``perform_seek()``: the agent processes and acks records while the seek's round trip is
in flight. ``perform_seek()`` then sets the read offset back to the committed offset, so the
next record of the fetch already in hand (say 185 after a seek to 171) looks like a hole in
the log, and ``_add_gap`` marks 172..185 as "never coming": offsets that were delivered and
acked. ``_new_offset`` merges the hole into the acked list, and every offset of it is now
there twice. A hole is also worse than slow: had those records still been waiting in the
agent's queue, the commit could have skipped them (the restarted worker would never see them).

The repairs, installed once per process like the fetch-wait patch in ``streams.app`` (3 and
4, found with the group lease's test, are argued where they are made below):

1. ``perform_seek`` stops the consumer's flow before it seeks when the flow is still running,
   so no record of a fetch taken before the seek reaches a stream afterwards; the records
   are fetched again from the committed offset. Every caller (the two recovery paths, and
   ``getmany`` when the flow is already stopped) resumes the flow itself right after the
   seek; if the seek fails we resume it here unless a rebalance has begun since.
2. ``_new_offset`` drops duplicate offsets before it looks for the run. A duplicate says
   nothing an offset's first copy did not, so this never commits more than was acked; it
   keeps a duplicate from any other source (Faust's ``_add_gap`` also puts the record that
   revealed a real hole, e.g. a transaction marker, into the hole) from costing a commit
   interval each (robinhood/faust#625, #559).
3. The seek takes the group's committed offsets as the whole truth (``seek_to_committed``),
   and a commit that outlasts its generation records nothing (``forget_stale_commit``).
4. What ``getmany`` fetched and did not hand on is fetched again (``give_back``).
5. A revocation commits what was acked before it forgets it, and a commit asked for while
   another is in flight commits once that one is done (``commit_before_revoking``).

Looked at again for the takeover stall (issue 14): if a rebalance lands while repair 1 has
the flow stopped, the seek is cancelled and the flow is left stopped, but every later
recovery round resumes it (both of its branches call ``resume_flow``), so this is not a
stall. Stopping the flow does drop the records of a fetch in hand (Faust's ``getmany``
breaks off) while aiokafka has moved past them, and a changelog partition being recovered
then waited for them until the stall guard stepped in: repair 4 takes such a partition
back. Records handed on whose message callback the stop cancels (a changelog record waiting
for room in Faust's changelog queue, which the flow's resume also clears) are dropped too,
and nothing fetches them again; looked at again (2026-12-01), that costs nothing today. A
stream partition is taken back by the seek after the recovery. An active changelog
partition is read only during its recovery, whose flow stops either with a rebalance, after
which the next recovery reads every active partition from its start again (the in-memory
store keeps no offsets, and ``EpochFence`` starts its bar again), or with the seek at its
end (repair 1), when every active partition has been applied to its end. What is left are
standby copies (off by default), which no command reads and which are read again from their
start when they become active. A store that kept offsets (RocksDB) would need them fetched
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.utils.functional import consecutive_numbers

log = logging.getLogger(__name__)


def install() -> None:
    """Patch Faust's ``Consumer`` (once per process)."""
    consumer_cls = faust_consumer.Consumer
    if getattr(consumer_cls, "_dispatchwire_offsets", False):
        return
    commit_offsets = consumer_cls._commit_offsets

    async def seek_with_flow_stopped(self: Any) -> None:
        if not self.flow_active:
            await seek_to_committed(self)
            return
        rebalances = self.app.rebalancing_count
        self.stop_flow()
        try:
            await seek_to_committed(self)
        except BaseException:
            if self.app.rebalancing_count == rebalances:
                self.resume_flow()
            raise

    async def commit_within_generation(
        self: Any, offsets: Mapping[Any, int], start_new_transaction: bool = True
    ) -> bool:
        generation = self.app.consumer_generation_id
        try:
            return bool(await commit_offsets(self, offsets, start_new_transaction))
        finally:
            if self.app.consumer_generation_id != generation:
                forget_stale_commit(self, offsets)

    wait_next_records = consumer_cls._wait_next_records
    getmany = consumer_cls.getmany

    async def wait_next_records_kept(self: Any, timeout: float) -> Any:
        records, active = await wait_next_records(self, timeout)
        self._dispatchwire_fetched = (records, positions(self, records)) if records else None
        return records, active

    async def getmany_giving_back(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        self._dispatchwire_fetched = None
        handed: dict[Any, int] = {}
        try:
            async for tp, message in getmany(self, timeout):
                handed[tp] = message.offset
                yield tp, message
        finally:
            fetched, self._dispatchwire_fetched = self._dispatchwire_fetched, None
            if fetched is not None:
                records, fetched_to = fetched
                await give_back(self, records, fetched_to, handed)

    commit = consumer_cls.commit
    on_partitions_revoked = consumer_cls.on_partitions_revoked

    async def commit_after_the_one_in_flight(
        self: Any, topics: Any = None, start_new_transaction: bool = True
    ) -> bool:
        while (in_flight := self._commit_fut) is not None:
            await asyncio.wait([in_flight])  # (a cancelled one is done too)
        return bool(await commit(self, topics, start_new_transaction))

    async def commit_before_revoking(self: Any, revoked: Any) -> None:
        await commit_revoked(self, revoked)
        await on_partitions_revoked(self, revoked)

    consumer_cls.commit = commit_after_the_one_in_flight  # type: ignore[method-assign]
    consumer_cls.on_partitions_revoked = commit_before_revoking  # type: ignore[method-assign]
    consumer_cls.perform_seek = seek_with_flow_stopped  # type: ignore[method-assign]
    consumer_cls._wait_next_records = wait_next_records_kept  # type: ignore[method-assign]
    consumer_cls.getmany = getmany_giving_back  # type: ignore[method-assign]
    consumer_cls._commit_offsets = commit_within_generation  # type: ignore[method-assign]
    consumer_cls._new_offset = new_offset  # type: ignore[method-assign]
    consumer_cls._dispatchwire_offsets = True  # type: ignore[attr-defined]


# How long a revocation waits for its commit (repair 5): a commit that cannot reach the
# group's coordinator in this time will not reach it before the rebalance does either.
REVOKE_COMMIT_S = 5.0


async def commit_revoked(consumer: Any, revoked: Any) -> None:
    """Repair 5: commit what was acked of the ``revoked`` partitions before Faust forgets it.

    Faust commits on revocation (``App._on_partitions_revoked`` awaits
    ``Consumer.wait_empty``, which commits), but ``Consumer.on_partitions_revoked`` first
    drops the revoked partitions' acked offsets and only then calls it, so that commit had
    nothing left to commit; and a commit asked for while another was in flight (the timer's,
    every ``COMMIT_INTERVAL_S``) waited for that one and returned without committing. So
    every rebalance left the commands acked since the last commit uncommitted, up to a
    commit interval's, and the partition's next owner (often the same worker) took them
    again and published their events a second time: the same events under the same ids
    (``streams.processing``, crash safety), harmless to consumers that dedupe by id, but
    copies on every scale-out, takeover and fence. Found with
    ``tests/streams/test_commit_in_flight.py`` (a commit held while a report is acked and a
    rebalance comes), which fails without it. A commit that cannot finish in
    ``REVOKE_COMMIT_S`` (a silent coordinator) is given up: those commands come again, as
    before."""
    if not revoked or consumer.app.client_only:
        return
    try:
        await asyncio.wait_for(consumer.commit(revoked), REVOKE_COMMIT_S)
    except Exception as exc:  # (a timeout included: the rebalance goes on without it)
        log.warning("the revoked partitions' acked offsets were not committed: %r", exc)


async def seek_to_committed(self: Any) -> None:
    """Faust's ``perform_seek`` with the group's committed offsets *replacing* Faust's own
    (repair 3), and a stream partition with nothing committed sent back to its start.

    Faust's ``perform_seek`` seeks every assigned partition to the offset the group
    committed and copies the answer into its bookkeeping, but only where the group had one:
    a partition with nothing committed keeps whatever ``_committed_offset`` held, and aiokafka's
    ``seek_to_committed`` leaves such a partition (or one committed at 0) where it was. And
    that bookkeeping can be ahead of the group: ``_commit_offsets`` records the offsets it
    tried whether or not the commit took, and a commit held up past a rebalance records them
    after the revocation cleared them. Found with ``tests/streams/test_lease_fence.py``: a worker
    let its first commands go (``streams.lease``) while its first commit was held; the commit
    failed, was recorded anyway after the revocation, and the rejoined worker believed offset 1
    committed. aiokafka had already fetched to offset 2 (a fetch Faust dropped, its flow
    stopped for the recovery), nothing moved it back, and the let-go command was never
    delivered until the stall guard's rebalance 30 s later (3 of 4 traced runs).

    So here the group's answer is the whole truth: each partition's read and committed
    offsets are set from it, a partition without one forgets any it had, and a stream
    partition without one goes back to its start, where a new member of the group would begin
    (``consumer_auto_offset_reset="earliest"``); records applied already come again and find
    their command records."""
    answer = await self.seek_to_committed()  # {tp: offset or None}; moves those above 0
    committed = {faust_consumer.ensure_TP(tp): offset for tp, offset in answer.items()}
    self._dispatchwire_committed = committed
    for tp, offset in committed.items():
        self._read_offset[tp] = offset if offset is not None and offset >= 0 else None
        if offset:
            self._committed_offset[tp] = offset
            continue
        self._committed_offset.pop(tp, None)
        if self.app.topics.acks_enabled_for(tp.topic):
            await self.seek(tp, 0)


def forget_stale_commit(self: Any, offsets: Mapping[Any, int]) -> None:
    """A commit that began in an earlier generation leaves nothing in ``_committed_offset``:
    Faust records the offsets it tried when the call returns, which may be after the
    revocation cleared them and after the new generation's seek set them from the group.
    Each goes back to what that seek found (or to unknown, until the next seek)."""
    found = getattr(self, "_dispatchwire_committed", {})
    for tp in offsets:
        if found.get(tp):
            self._committed_offset[tp] = found[tp]
        else:
            self._committed_offset.pop(tp, None)


def positions(self: Any, tps: Iterable[Any]) -> dict[Any, int | None]:
    """aiokafka's position of each of ``tps`` (``None``: not assigned, or none yet)."""
    try:
        assignment = self._thread._ensure_consumer()._subscription.subscription.assignment
    except Exception:  # stopping, or not started: no positions
        return {}
    found: dict[Any, int | None] = {}
    for tp in tps:
        state = assignment.state_value(tp)
        found[tp] = None if state is None else state._position
    return found


async def give_back(
    self: Any,
    fetched: Mapping[Any, Any],
    fetched_to: Mapping[Any, int | None],
    handed: Mapping[Any, int],
) -> None:
    """Repair 4: what ``getmany`` fetched and did not hand on is fetched again.

    Faust's ``getmany`` drops the rest of a fetch without a trace when the flow stops while
    it hands records on, when the generation changes, or when a partition is no longer
    active, and it drops the whole fetch when the flow was stopped as it arrived; aiokafka's
    position has moved past all of them. For a stream partition the seek after the recovery
    takes it back; for a changelog partition being recovered nothing does, and the recovery
    waits for those records until the stall guard's rebalance: seen in
    ``tests/streams/test_lease_fence.py`` (2 of 10 runs, "no progress on changelog 0 for 30s
    (recovering the table)": a fetch of the changelog and the commands arrived while the flow
    was stopped for the seek after the rejoin). So each partition whose fetched records were
    not all handed on goes back to the first of them, unless something has moved it since
    the fetch (``fetched_to``: its position then): a later seek knows better."""
    left: dict[Any, int] = {}  # partition: its first record not handed on
    for tp, records in fetched.items():
        last = handed.get(tp)
        if records and (last is None or records[-1].offset > last):
            left[tp] = next(r.offset for r in records if last is None or r.offset > last)
    if not left:
        return  # the usual case: every record handed on
    now = positions(self, left)
    for tp, first in left.items():
        if now.get(tp) is None or now.get(tp) != fetched_to.get(tp):
            continue
        log.info(
            "%s[%s]: records from %d fetched and not handed on; fetching them again",
            tp.topic,
            tp.partition,
            first,
        )
        await self.seek(faust_consumer.ensure_TP(tp), first)


def new_offset(self: Any, tp: Any) -> int | None:
    """Faust's ``Consumer._new_offset`` with duplicates dropped after holes are merged in:
    the offset after the first run of consecutive acked offsets, if that run starts at the
    committed offset (or one past it, Faust's allowance for a compacted record)."""
    acked: list[int] = self._acked[tp]
    if not acked:
        return None
    holes = self._gap[tp]
    if holes:
        top = max(acked)
        found = sorted(holes.overlap(0, top), key=lambda interval: interval.begin)
        if found:
            filled = [
                offset for interval in found for offset in range(interval.begin, interval.end)
            ]
            acked.extend(filled)
            holes.chop(0, max(filled[-1], top + 1))
    acked[:] = sorted(set(acked))
    committed = self._committed_offset[tp]
    if committed and acked[0] - committed > 1:
        return None
    run = next(consecutive_numbers(acked))
    del acked[: len(run)]
    self._acked_index[tp].difference_update(run)
    return int(run[-1]) + 1
