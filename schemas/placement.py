"""Which partition a region's records go to: one explicit rule shared by every producer.

The rule. The dispatch regions form one ordered list (``Settings.regions``, env
``DISPATCHWIRE_REGIONS``; for Helsinki ``hki-nw, hki-ne, hki-sw, hki-se``). A region's
partition is its index in that list modulo the topic's partition count, counted over the
topic's partition ids in ascending order. The list is append-only: a new region goes at
the end, so adding one never moves an existing region (reordering or removing entries
would, and so would changing the partition count). With as many partitions as regions
each region has a partition of its own; with 8 regions on 4 partitions each partition
carries two.

Everyone uses it: the API's command producer, the worker's events and its movement
timer's commands, the simulator, seed and replay's re-emission into a topic. So a
region's commands, its events and the worker's changelog entries (written to the
partition of the command being processed) all sit on the same partition number.
Kafka's default partitioner hashes the key instead (murmur2), which put the four Helsinki
regions on partitions 0 and 1 only.

Fallback. A key that is not a listed region (a region of another road network that was not
added to the list, or any other key) goes where Kafka's default partitioner would put it:
murmur2 of the key bytes, made positive, modulo the partition count; a record without a key
goes to a random available partition. The fallback is stable too, but it may share a
partition with a listed region: list every region you run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["RegionPartitioner", "murmur2", "partition_for"]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed int."""
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & 3
    base = length & ~3
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(region: str, partitions: int, regions: Sequence[str]) -> int:
    """The partition (``0 .. partitions-1``) of ``region`` under the rule above."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    try:
        return list(regions).index(region) % partitions
    except ValueError:
        return (murmur2(region.encode()) & 0x7FFFFFFF) % partitions


class RegionPartitioner:
    """``partitioner(key_bytes, all_partitions, available_partitions) -> partition``.

    The callable that aiokafka's ``AIOKafkaProducer(partitioner=...)`` and Faust's
    ``producer_partitioner`` setting take; ``infra.topics`` wraps it for kafka-python.
    The key is the region's name as UTF-8 bytes (the key of every command and event).
    """

    def __init__(self, regions: Sequence[str]) -> None:
        self.regions = tuple(regions)
        self._index = {region.encode(): i for i, region in enumerate(self.regions)}

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        ids = sorted(all_partitions)
        if key is None:
            return random.choice(list(available) or ids)  # as Kafka's default does
        index = self._index.get(bytes(key))
        if index is None:
            index = murmur2(bytes(key)) & 0x7FFFFFFF
        return ids[index % len(ids)]

    def partition_for(self, region: str, partitions: int) -> int:
        return partition_for(region, partitions, self.regions)
