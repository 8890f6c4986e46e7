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

Compaction keeps only the last write of each key, so a late write that no later write of
its key follows would outlive the value it was skipped for: once its segment is cleaned, a
restore would skip it and have nothing for the key at all. So a restore notes the keys
whose last record it read was a skipped late write (``late_keys``), and an owner, once its
recovery of the partition completes, writes each of them again right after its marker
(``ChangelogTable.on_recovery_completed``): the value the restore put in its table, or a
tombstone if it holds none. Those writes carry the owner's epoch and come after the late
ones, so the cleaner keeps them and drops the late ones.

What it leaves: a late write that lands before the next owner's marker is read as that
owner's predecessor's, as before; the marker is the next owner's first write, so that is a
window of one round trip after its recovery. A late write that lands while an owner runs is
noted by the partition's next restore. A rebalance restores every partition of the
in-memory table; the worker that wrote late rejoins its group (which had dropped it) only
after its revocation, which waits for the batch (let go once its writes are acknowledged or
failed: ``BatchProcessor._let_go``) and flushes the producer (Faust's
``_on_partitions_revoked``), so the rebalance of its rejoin normally follows every write it
had in flight (argued from the code, not seen in a run).
If none does (that worker dies first), and no restore of the partition or write of the key
comes before the cleaner has closed and cleaned the segment (``changelog_segment_ms``, an
hour, at the least), the owner's value of the key is gone from the changelog (before epochs,
the late value would have been read).
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
        self.rewritten = 0  # keys an owner wrote again over them (``late_keys``)
        # per partition, the keys whose last record in the current read was a late write
        self.late_keys: dict[int, set[Any]] = {}

    def admit(self, events: Iterable[Any]) -> Iterator[Any]:
        late: dict[int, int] = {}
        for event in events:
            message = event.message
            partition, offset = message.partition, message.offset
            if offset <= self.read_to.get(partition, -1):
                self.bar.pop(partition, None)  # read again from an earlier offset
                self.late_keys.pop(partition, None)
            self.read_to[partition] = offset
            epoch = epoch_of(message.headers)
            bar = self.bar.get(partition, NO_EPOCH)
            if epoch < bar:
                late[partition] = late.get(partition, 0) + 1
                if event.key != EPOCH_KEY:  # the owner's own marker follows a late one
                    self.late_keys.setdefault(partition, set()).add(event.key)
                continue
            self.bar[partition] = epoch
            if epoch > self.highest.get(partition, NO_EPOCH):
                self.highest[partition] = epoch
            if event.key != EPOCH_KEY:
                keys = self.late_keys.get(partition) if self.late_keys else None
                if keys:
                    keys.discard(event.key)  # a later write of the key: not last any more
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
