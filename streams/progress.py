"""The worker notices partitions it owns but does not move (issue 14, the takeover stall).

With two workers, after a SIGKILL of one, the survivor sometimes listed the partitions it
took over and answered none of them for 90-180 s (2 of 4 scale bench runs on one broker;
faust-streaming#629 reports the same symptom). Its ready page said 200 all along. Its
cause is not found: it did not show in 9 later takeovers (6 on a broker of their own, 5
of them with Faust's debug logs; 2 of the bench's; 1 of the cluster fault case), and
reading Faust's rebalance and recovery path (a flow or fetch never resumed, a recovery
waiting for changelog records already fetched and dropped) named suspects but no proof.
So this module does not claim to cure a cause: it is the guard an operator wants, whatever
the cause.

``ProgressWatch`` remembers, per partition that should move, where it stood and since when.
A partition should move while it is behind: a commands partition whose end offset is past
what the worker has acked, or, while the table recovers, a changelog partition with records
left to read. One that is behind and has not moved for ``Settings.worker_stall_timeout_s``
is stalled: the ready page answers 503 naming it, and the log says so.

And then the worker asks its consumer group to rebalance (``request_rejoin``): the group
runs Faust's revoke / assign / recovery path again for every member, which stops the flow,
clears the queues, seeks every partition back to its committed (or recovered) offset and
resumes it: the path a restart of the worker would run, without the restart. It does not
*leave* the group: after the SIGKILL that causes the takeover it is the only member, and a
member that leaves hands its partitions to nobody until it comes back. A rebalance costs
one recovery (seconds for our tables) and is asked for at most once per timeout; a worker
that really is stuck (a dead broker) shows as not ready either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# ("commands" or "changelog", partition number)
Key = tuple[str, int]
# The end offsets' round trip, at most (the timer runs every second).
END_OFFSETS_S = 2.0


@dataclass
class _Seen:
    position: int | None
    since: float


@dataclass
class ProgressWatch:
    """Which partitions are behind and have not moved for ``timeout_s``."""

    timeout_s: float
    seen: dict[Key, _Seen] = field(default_factory=dict)
    rejoined_at: float | None = None

    def observe(self, now: float, positions: Mapping[Key, tuple[int | None, bool]]) -> None:
        """``positions``: per partition, (where it stands, whether it is behind). A partition
        that moved, is not behind, or is new starts its clock again; one no longer given is
        forgotten."""
        for key in list(self.seen):
            if key not in positions:
                del self.seen[key]
        for key, (position, behind) in positions.items():
            seen = self.seen.get(key)
            if seen is None or seen.position != position or not behind:
                self.seen[key] = _Seen(position, now)

    def may_rejoin(self, now: float) -> bool:
        """At most one rebalance asked for per ``timeout_s``."""
        if self.rejoined_at is not None and now - self.rejoined_at < self.timeout_s:
            return False
        self.rejoined_at = now
        return True

    def stalled(self, now: float) -> dict[Key, float]:
        """The partitions behind and unmoved for at least ``timeout_s``, with for how long."""
        if self.timeout_s <= 0:
            return {}
        return {
            key: now - seen.since
            for key, seen in self.seen.items()
            if now - seen.since >= self.timeout_s
        }


def _acked_position(consumer: Any, tp: Any) -> int | None:
    """The next offset of ``tp`` the worker has not acked yet, as far as Faust knows."""
    committed = consumer._committed_offset.get(tp)
    acked = consumer._acked.get(tp)
    top = max(acked) + 1 if acked else None
    if committed is None:
        return top
    return committed if top is None else max(committed, top)


async def positions(app: Any, commands_topic: str) -> dict[Key, tuple[int | None, bool]]:
    """What should move now: the table's changelog partitions while it recovers, else the
    commands partitions (their end offsets asked of the broker)."""
    consumer = app.consumer
    recovery = app.tables.recovery
    if app.in_recovery:
        remaining = recovery.active_remaining()
        return {
            ("changelog", tp.partition): (recovery.active_offsets.get(tp), remaining[tp] > 0)
            for tp in recovery.active_tps
        }
    tps = [tp for tp in consumer.assignment() if tp.topic == commands_topic]
    if not tps:
        return {}
    ends = await consumer.highwaters(*tps)
    found: dict[Key, tuple[int | None, bool]] = {}
    for tp in tps:
        position = _acked_position(consumer, tp)
        end = ends.get(tp)
        found[("commands", tp.partition)] = (position, end is not None and end > (position or 0))
    return found


async def request_rejoin(app: Any, past: int | None = None) -> None:
    """Ask the group to rebalance, from the aiokafka consumer's own thread and loop.

    With ``past`` (the generation a fenced batch was fetched in, ``streams.lease``), only
    while the consumer has not joined a later generation since. A worker its group dropped
    often hears so from a heartbeat and rejoins by itself; when the fence's request reaches
    the consumer's thread after that rejoin (the hop waits for the thread's loop), asking
    again would cost every partition one more revoke, recovery and seek for nothing: the
    commands the fence let go come again with the later generation's seek anyway
    (``tests/streams/test_lease_fence.py``: a third join before this check)."""
    thread = app.consumer._thread

    async def rejoin() -> None:
        coordinator = thread._ensure_consumer()._coordinator
        if past is not None and coordinator.generation > past:
            log.info(
                "not asking for a rebalance: the fenced generation %d is past (now %d)",
                past,
                coordinator.generation,
            )
            return
        coordinator.request_rejoin()

    await thread.call_thread(rejoin)


class StallGuard:
    """The timer's and the ready page's side of ``ProgressWatch`` for one worker."""

    def __init__(self, timeout_s: float, commands_topic: str) -> None:
        self.watch = ProgressWatch(timeout_s)
        self.commands_topic = commands_topic
        self.reason: str | None = None

    async def check(self, app: Any, broker_reachable: bool = True) -> None:
        """One look (every ``readiness.PROBE_INTERVAL_S``); asks for a rebalance when stalled.
        Without the broker nothing can move: the clocks start again once it answers (the
        ready page names the broker meanwhile)."""
        if self.watch.timeout_s <= 0:
            return
        now = time.monotonic()
        try:
            if not broker_reachable:
                raise ConnectionError("the broker does not answer")
            found = await asyncio.wait_for(positions(app, self.commands_topic), END_OFFSETS_S)
        except Exception as exc:
            log.debug("progress check skipped: %r", exc)
            self.watch.seen.clear()
            self.reason = None
            return
        self.watch.observe(now, found)
        stalled = self.watch.stalled(now)
        if not stalled:
            if self.reason is not None:
                log.info("the worker's partitions move again")
            self.reason = None
            return
        names = ", ".join(f"{kind} {partition}" for kind, partition in sorted(stalled))
        self.reason = (
            f"no progress on {names} for {max(stalled.values()):.0f}s "
            f"({'recovering the table' if app.in_recovery else 'behind, nothing acked'})"
        )
        if not self.watch.may_rejoin(now):
            return
        log.error("worker stalled: %s; asking the group to rebalance", self.reason)
        try:
            await request_rejoin(app)
        except Exception as exc:
            log.error("could not ask the group to rebalance: %r", exc)
