"""The resume ring: the read model's most recent live messages, in log order, so a client
that reconnects with a ``Last-Event-ID`` gets what it missed without a trip to Kafka.

It holds at most ``Settings.api_ring_size`` messages (all partitions together) and knows,
per partition, the first offset it still holds every message from: a resume point below
that is answered with None, and the feed reads the gap from Kafka instead
(``api.feed.replay_from_kafka``).
"""

from __future__ import annotations

from collections import deque

from api.broadcast import LiveMessage
from schemas.position import Position


class ResumeRing:
    """The last ``size`` live messages, with what left per partition."""

    def __init__(self, size: int) -> None:
        self.size = max(size, 1)
        self._messages: deque[LiveMessage] = deque()
        self._counts: dict[int, int] = {}
        self._evicted_next: list[int] = []  # below this, a partition's records left the ring

    def resize(self, partitions: int) -> None:
        """Track ``partitions`` partitions (a topic only ever gains some)."""
        self._evicted_next.extend([0] * (partitions - len(self._evicted_next)))

    def starts_at(self, partition: int, offset: int) -> None:
        """The log of ``partition`` begins at ``offset``: nothing before it is missing."""
        self._evicted_next[partition] = offset

    def remember(self, message: LiveMessage) -> None:
        if len(self._messages) >= self.size:
            old = self._messages.popleft()
            self._evicted_next[old.partition] = old.offset + 1
            self._counts[old.partition] -= 1
        self._messages.append(message)
        self._counts[message.partition] = self._counts.get(message.partition, 0) + 1

    def since(self, since: Position) -> list[LiveMessage] | None:
        """The messages after ``since`` up to now, or None if some have left the ring."""
        if any(since[p] < self._evicted_next[p] for p in range(len(self._evicted_next))):
            return None
        pending = {p for p, n in self._counts.items() if n}
        newer: list[LiveMessage] = []
        for message in reversed(self._messages):
            if message.offset >= since[message.partition]:
                newer.append(message)
            else:
                pending.discard(message.partition)
                if not pending:
                    break
        newer.reverse()
        return newer
