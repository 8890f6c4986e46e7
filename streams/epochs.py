"""Owner epochs on the table's changelog: a restore skips what an earlier owner wrote late.

The known gap this closes (``streams.lease``, "What the rule leaves"): a worker whose group
lease ran out may already have *sent* table writes, and a produce request can reach the
changelog long after it was sent (a paused partition leader; aiokafka retrying it on the
new leader after its request timeout, 17 s). Meanwhile the partition's next owner has read
the changelog without them and decided those commands again; the late writes then sit in
the changelog after the new owner's, and the next restore of the partition read them last.
Seen in the paused-node cluster case: a retried dispatch's ``command_repeated`` answer
came again with another body (the restore had put back the fenced worker's record of the
dispatch, whose events had never left, over the record the new owner had published).

The rule. Every write a worker sends to a changelog partition carries its *epoch* for that
partition (a record header, ``EPOCH_HEADER``): ``(n, generation)``, where ``n`` is one more
than the highest ``n`` it has seen on that partition when its recovery of it completes,
and ``generation`` the group generation it was assigned the partition in. Right after the
recovery the worker queues a *marker* (key ``EPOCH_KEY``, value its epoch) ahead of the
partition's writes, so the next owner, which reads the changelog after the group dropped
this one, normally sees that epoch and picks a higher ``n``. If the marker had not landed
by then (the next owner read no more than this one did), both pick the same ``n``, and the
generation, higher for the later owner, orders them. The marker is not awaited: a silent
partition leader must not hold up the partitions whose leaders answer.

Epochs therefore rise along the changelog, except where an earlier owner's write landed
late. A restore keeps the highest epoch read so far on each partition and skips any write
below it (``EpochFence``): the late write of a fenced worker whose batch was let go (its
events never left; its commands came again to the new owner). A write without the header
(before this change) has epoch ``(0, 0)``. Markers are never put in the table.

What it leaves: a late write that lands before the next owner's marker is read as that
owner's predecessor's, as before; the marker is the next owner's first write, so that is a
window of one round trip after its recovery. Compaction keeps the last write of each key: if
an earlier owner's late write of a key was followed by no later write of it, the new owner's
earlier value of it is compacted away and the restore, skipping the late one, no longer has
the key at all (before, it had the late value); a compacted segment needs
``changelog_segment_ms`` to close first, and any write of the key since puts it right.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

EPOCH_HEADER = "dw-epoch"
# The marker's table key: not one the state uses (``streams.state`` keys are "<kind>:...")
EPOCH_KEY = "~epoch"

Epoch = tuple[int, int]  # (n, generation)
NO_EPOCH: Epoch = (0, 0)


def encode_epoch(epoch: Epoch) -> bytes:
    return f"{epoch[0]}.{epoch[1]}".encode()


def decode_epoch(raw: bytes | None) -> Epoch:
    """An epoch header's value; a missing or unreadable one is ``NO_EPOCH``."""
    if not raw:
        return NO_EPOCH
    try:
        n, generation = raw.decode().split(".")
        return int(n), int(generation)
    except (UnicodeDecodeError, ValueError):
        return NO_EPOCH


def epoch_of(headers: Any) -> Epoch:
    """The epoch a changelog record carries (Faust hands headers on as a list of pairs or a
    mapping, as the client gave them)."""
    if not headers:
        return NO_EPOCH
    pairs = headers.items() if hasattr(headers, "items") else headers
    for name, value in pairs:
        if name == EPOCH_HEADER:
            return decode_epoch(value)
    return NO_EPOCH


class EpochFence:
    """Per changelog partition: the highest epoch read (``admit``) or taken (``take``).

    ``admit`` filters a batch of changelog events in log order: an event below the highest
    epoch read before it on its partition is skipped (a late write of an earlier owner),
    a marker only raises the bar. A read that starts again from an earlier offset (every
    restore of the in-memory store reads the partition from its start) starts its bar
    again, since the bar belongs to a position in the log."""

    def __init__(self) -> None:
        self.bar: dict[int, Epoch] = {}  # the highest epoch of the current read
        self.read_to: dict[int, int] = {}  # the offset it has reached
        self.highest: dict[int, Epoch] = {}  # the highest ever read or taken
        self.skipped = 0  # late writes skipped, over the worker's life

    def admit(self, events: Iterable[Any]) -> Iterator[Any]:
        late: dict[int, int] = {}
        for event in events:
            message = event.message
            partition, offset = message.partition, message.offset
            if offset <= self.read_to.get(partition, -1):
                self.bar.pop(partition, None)  # read again from an earlier offset
            self.read_to[partition] = offset
            epoch = epoch_of(message.headers)
            bar = self.bar.get(partition, NO_EPOCH)
            if epoch < bar:
                late[partition] = late.get(partition, 0) + 1
                continue
            self.bar[partition] = epoch
            if epoch > self.highest.get(partition, NO_EPOCH):
                self.highest[partition] = epoch
            if event.key != EPOCH_KEY:
                yield event
        for partition, count in late.items():
            self.skipped += count
            log.warning(
                "changelog partition %d: skipped %d late writes of an earlier owner "
                "(below epoch %s)",
                partition,
                count,
                self.bar[partition],
            )

    def take(self, partition: int, generation: int) -> Epoch:
        """The epoch of an owner assigned ``partition`` in ``generation``, its recovery of
        the partition complete: above every epoch read or taken on it."""
        epoch = (self.highest.get(partition, NO_EPOCH)[0] + 1, generation)
        self.highest[partition] = epoch
        return epoch
