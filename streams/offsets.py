"""Two repairs to Faust's committed-offset bookkeeping (issue 10, item 2).

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

The repairs (a third, ``rewind_uncommitted``, below), installed once per process like the
fetch-wait patch in ``streams.app``:

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

Looked at again for the takeover stall (issue 14): if a rebalance lands while repair 1 has
the flow stopped, the seek is cancelled and the flow is left stopped, but every later
recovery round resumes it (both of its branches call ``resume_flow``), so this is not a
stall. It has one cost: at the end of a recovery the standby changelog partitions are
already fetching, and stopping the flow drops the records of a fetch in hand (Faust's
``getmany`` breaks off, the message callback is cancelled) while aiokafka has moved past
them; ``seek_to_committed`` does not move changelog partitions back (nothing committed), so
a standby copy can miss records. Harmless today, as a gained partition is replayed from
offset 0 (README, Known gaps), but it must be solved before a takeover starts from a
standby's offset.
"""

from __future__ import annotations

from typing import Any

from faust.transport import consumer as faust_consumer
from faust.utils.functional import consecutive_numbers


def install() -> None:
    """Patch Faust's ``Consumer`` (once per process)."""
    consumer_cls = faust_consumer.Consumer
    if getattr(consumer_cls, "_dispatchwire_offsets", False):
        return
    perform_seek = consumer_cls.perform_seek

    async def seek_with_flow_stopped(self: Any) -> None:
        if not self.flow_active:
            await perform_seek(self)
            await rewind_uncommitted(self)
            return
        rebalances = self.app.rebalancing_count
        self.stop_flow()
        try:
            await perform_seek(self)
            await rewind_uncommitted(self)
        except BaseException:
            if self.app.rebalancing_count == rebalances:
                self.resume_flow()
            raise

    consumer_cls.perform_seek = seek_with_flow_stopped  # type: ignore[method-assign]
    consumer_cls._new_offset = new_offset  # type: ignore[method-assign]
    consumer_cls._dispatchwire_offsets = True  # type: ignore[attr-defined]


async def rewind_uncommitted(self: Any) -> None:
    """Repair 3: a stream partition with nothing committed goes back to its start.

    ``perform_seek`` is how a recovery takes the stream partitions back to where the group
    committed, for the records the streams skipped while it ran; aiokafka's
    ``seek_to_committed`` moves only partitions with a committed offset above 0. A partition
    of a group that has committed nothing yet kept its position, past records fetched and
    never applied: found when a worker let its first commands go unacked (``streams.lease``)
    before its first commit got out, rejoined, and never saw them again (aiokafka had read to
    offset 2, nothing committed; ``tests/streams/test_lease_fence.py``). The start is where
    a new member of the group would begin (``consumer_auto_offset_reset="earliest"``);
    records applied already come again and find their command records."""
    for tp in self.assignment():
        if self.app.topics.acks_enabled_for(tp.topic) and not self._committed_offset.get(tp):
            await self.seek(tp, 0)


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
