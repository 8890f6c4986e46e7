"""The worker's effects leave only while it surely still owns the partitions they come from.

Found by the paused-node cluster case (``tests/faults/test_cluster_faults.py``): one run in
seven, then the first run of the next session, ended with a unit ON_SCENE for an emergency
that did not hold it, for good. The log showed why: for several seconds two workers decided
the same partition's commands, each against its own table, and both published (the same
saga step twice, at unit versions 13 and 11). The node that was paused coordinated the
workers' group. Their heartbeats to it waited for its answer (up to the request timeout,
17 s) while the group, now coordinated by another node, saw no heartbeat for the session
timeout (6 s) and dropped both. The first to come back got every partition; the other went
on fetching from the partitions' leaders (healthy nodes), deciding and publishing until its
own heartbeat failed, ~17 s after the pause. Kafka does not stop a member it has dropped:
without transactions (which this design declined, ``streams.processing``) a member has to
stop itself.

The rule. The group drops a member whose last heartbeat it *received* is ``session``
seconds old, and our heartbeat was received after we *sent* it; so while less than
``session`` seconds have passed since we sent the last heartbeat that was answered (or the
join or sync that made the current generation), the group still counts us, and no other
member can own our partitions yet. ``GroupLease.holds`` answers that, with
``LEASE_MARGIN_S`` to spare and for the generation a message was fetched in. The worker asks
before it decides a batch, before a part of it sends its table writes, and again before it
publishes that part's events (``streams.processing.BatchProcessor``); a worker that no
longer holds the lease sends and publishes nothing more, puts its table back as it was, lets
the batch go unacked and asks the group to rebalance. Heartbeats go every second, so the
lease is normally at most a second old; a worker that cannot heartbeat for ``session -
margin`` seconds stops work it could not safely finish anyway.

What the rule leaves: table writes already sent when the lease ran out may reach the
changelog after the partition's next owner has read it. That owner decides those commands
again, and the late writes sit in the changelog after its own; a later restore of that
partition skips them, as each write carries its owner's epoch (``streams.epochs``).
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator

# The requests whose answer (a NoError or RebalanceInProgress) shows that the group counts the
# member: JoinGroup (11), Heartbeat (12), SyncGroup (14). A heartbeat answered "rebalancing"
# still renewed the session on the coordinator, which answers it so (the member must rejoin
# within the rebalance timeout, and keeps its partitions until it does).
RENEWING_API_KEYS = frozenset({11, 12, 14})
RENEWING_ERRORS = frozenset({0, 27})
# Time a check leaves to the effect it lets through and to clocks that tick apart.
LEASE_MARGIN_S = 1.0
# Where the send time of the last renewing request lives, on aiokafka's coordinator.
RENEWED_AT = "_dispatchwire_renewed_at"


def track_group_lease() -> None:
    """Patch aiokafka's group coordinator (once per process) to remember when it sent the
    last request the group answered as a member's (``RENEWED_AT``)."""
    if getattr(GroupCoordinator, "_dispatchwire_lease", False):
        return
    send_req = GroupCoordinator._send_req

    async def renewing_send_req(self: Any, request: Any) -> Any:
        sent_at = time.monotonic()
        response = await send_req(self, request)
        if (
            request.API_KEY in RENEWING_API_KEYS
            and getattr(response, "error_code", None) in RENEWING_ERRORS
        ):
            setattr(self, RENEWED_AT, sent_at)
        return response

    GroupCoordinator._send_req = renewing_send_req
    GroupCoordinator._dispatchwire_lease = True


class GroupLease:
    """Whether the worker's consumer is surely still a member of its group, in the generation
    a message was fetched in (see above). Read from the agent's loop; aiokafka's coordinator
    lives in Faust's consumer thread, and only its plain attributes are read here."""

    def __init__(self, app: Any, session_s: float, margin_s: float = LEASE_MARGIN_S) -> None:
        self.app = app
        self.lease_s = session_s - margin_s

    def age(self) -> float | None:
        """Seconds since the last renewing request was sent, or None before the first."""
        return _age(group_coordinator(self.app))

    def holds(self, generation: int) -> bool:
        coordinator = group_coordinator(self.app)
        if coordinator is None or coordinator.generation != generation:
            return False  # dropped (generation reset to -1) or a rebalance since the fetch
        age = _age(coordinator)
        return age is not None and age < self.lease_s


def group_coordinator(app: Any) -> Any:
    """The worker's aiokafka group coordinator (None before its consumer is made); its plain
    attributes (``generation``, ``RENEWED_AT``) may be read from the agent's loop."""
    consumer = getattr(app.consumer._thread, "_consumer", None)
    return getattr(consumer, "_coordinator", None)


def _age(coordinator: Any) -> float | None:
    renewed = getattr(coordinator, RENEWED_AT, None)
    return None if renewed is None else time.monotonic() - renewed
