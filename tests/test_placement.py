"""Issue 14 item 1: every region on a partition by one explicit rule, shared by every producer.

Kafka's default partitioner hashed the four Helsinki regions onto partitions 0 and 1 of
four; ``schemas.placement`` puts a region at its index in ``Settings.regions`` modulo the
partition count, and the API, the worker (events, movement ticks, changelog), seed and the
simulator all use it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

import pytest
from kafka.partitioner.default import murmur2 as kafka_murmur2

from api.bus import CommandBus
from dispatchwire.settings import Settings
from infra.topics import ensure_topics, kafka_python_partitioner, region_partitioner
from schemas import DispatchEmergency, EmergencyType, ReportEmergency
from schemas.geo import region_ids
from schemas.placement import RegionPartitioner, murmur2, partition_for
from streams.seed import seed
from tests.conftest import wait_for
from tests.streams.helpers import changelog_topic, read_to_end

HELSINKI = ("hki-nw", "hki-ne", "hki-sw", "hki-se")
EIGHT = (*HELSINKI, "esp-n", "esp-s", "van-e", "van-w")


def test_default_region_list_is_the_network_s_regions_in_order() -> None:
    assert Settings().regions == HELSINKI == tuple(region_ids())


def test_four_regions_on_four_partitions_one_each() -> None:
    placed = {r: partition_for(r, 4, HELSINKI) for r in HELSINKI}
    assert placed == {"hki-nw": 0, "hki-ne": 1, "hki-sw": 2, "hki-se": 3}
    # Kafka's default partitioner, for comparison, used only two of the four
    hashed = {(kafka_murmur2(r.encode()) & 0x7FFFFFFF) % 4 for r in HELSINKI}
    assert len(hashed) < 4


def test_eight_regions_on_four_partitions_two_each() -> None:
    per_partition = Counter(partition_for(r, 4, EIGHT) for r in EIGHT)
    assert per_partition == {0: 2, 1: 2, 2: 2, 3: 2}


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 8])
def test_appending_a_region_never_moves_an_existing_one(partitions: int) -> None:
    for n in range(1, len(EIGHT)):
        before, after = EIGHT[:n], EIGHT[: n + 1]
        assert [partition_for(r, partitions, before) for r in before] == [
            partition_for(r, partitions, after) for r in before
        ]


def test_unlisted_keys_fall_back_to_kafka_s_default_hash() -> None:
    rng = random.Random(5)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) for _ in range(500)]
    keys += [b"case-123", b"r1", "région-ü".encode()]
    place = RegionPartitioner(HELSINKI)
    for key in keys:
        assert murmur2(key) & 0xFFFFFFFF == kafka_murmur2(key)  # (ours is signed, as Java)
        assert place(key, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]) == (kafka_murmur2(key) & 0x7FFFFFFF) % 5


def test_partitioners_agree_and_use_the_topic_s_partition_ids() -> None:
    settings = Settings(regions=EIGHT)

    class Cluster:
        def partitions_for_topic(self, topic: str) -> set[int]:
            return {3, 1, 0, 2}

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2, 3}

    aio, kp = region_partitioner(settings), kafka_python_partitioner(settings)
    for region in EIGHT:
        key = region.encode()
        expected = partition_for(region, 4, EIGHT)
        assert aio(key, [3, 1, 0, 2], [0, 1]) == expected
        assert kp.partition("t", region, key, None, None, Cluster()) == expected


@pytest.mark.kafka
@pytest.mark.slow
def test_each_region_s_commands_events_and_table_land_on_its_partition(
    make_settings, running_worker
) -> None:
    settings = make_settings(partitions=4, tick_seconds=0.5)
    ensure_topics(settings)
    running_worker(settings)
    units = seed(settings)  # kafka-python, as `dispatchwire seed`
    stations = {u.region: (u.lat, u.lon) for u in units}
    reports = [
        ReportEmergency(
            region=region,
            type=EmergencyType.MEDICAL,
            priority=2,
            lat=lat + 0.0015,
            lon=lon,
            description="placement",
        )
        for region, (lat, lon) in stations.items()
    ]

    async def send_through_the_api() -> None:
        bus = CommandBus(settings)  # aiokafka, as the API
        try:
            for report in reports:
                await bus.send(report)
            for report in reports:
                await bus.send(
                    DispatchEmergency(region=report.region, emergency_id=report.emergency_id)
                )
        finally:
            await bus.stop()

    asyncio.run(send_through_the_api())

    def moved_everywhere() -> list:
        events = read_to_end(settings, settings.events_topic)
        moving = {
            json.loads(r.value)["region"]
            for r in events
            if json.loads(r.value)["event"] == "unit_location"
        }
        return events if moving == set(HELSINKI) else []

    # events of every kind, including the movement timer's ticks, from every region
    events = wait_for(
        moved_everywhere, timeout=90, interval=0.5, message="units of every region moving"
    )
    commands = read_to_end(settings, settings.commands_topic)
    changelog = read_to_end(settings, changelog_topic(settings))

    expected = {region: partition_for(region, 4, HELSINKI) for region in HELSINKI}
    assert sorted(expected.values()) == [0, 1, 2, 3]
    for name, records in (("commands", commands), ("events", events)):
        placed = {(r.key.decode(), r.partition) for r in records}
        assert placed == set(expected.items()), name
    ticks = [r for r in commands if b'"kind":"unit_position"' in r.value.replace(b" ", b"")]
    assert {r.key.decode() for r in ticks} == set(HELSINKI)  # the worker's timer sent them
    entities = [
        (json.loads(r.value)["region"], r.partition)
        for r in changelog
        if json.loads(r.key)[:2] in ("e:", "u:") and r.value
    ]
    assert entities and set(entities) == set(expected.items())
