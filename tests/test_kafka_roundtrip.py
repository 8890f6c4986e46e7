"""Produce and consume through the real broker with both Kafka clients we use."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer

from dispatchwire.settings import Settings
from schemas import ReportEmergency, decode_command, encode

pytestmark = pytest.mark.kafka


def _report(i: int) -> ReportEmergency:
    return ReportEmergency(
        region="r1",
        type="medical",
        priority=1 + i % 5,
        lat=60.17,
        lon=24.94,
        description=f"case {i}",
    )


def test_kafka_python_round_trip(settings: Settings) -> None:
    sent = [_report(i) for i in range(20)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for cmd in sent:
        producer.send(settings.commands_topic, key=cmd.region.encode(), value=encode(cmd))
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        settings.commands_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15_000,
    )
    got = []
    for record in consumer:
        got.append(decode_command(record.value))
        if len(got) == len(sent):
            break
    consumer.close()
    # One key -> one partition -> the order is kept.
    assert got == sent


def test_aiokafka_round_trip(settings: Settings) -> None:
    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait(
                    settings.events_topic, key=b"r2", value=encode(_report(i))
                )
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            settings.events_topic,
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        values: list[bytes] = []
        try:
            async with asyncio.timeout(20):
                async for record in consumer:
                    values.append(record.value)
                    if len(values) == 20:
                        break
        finally:
            await consumer.stop()
        return values

    values = asyncio.run(run())
    assert [decode_command(v).description for v in values] == [f"case {i}" for i in range(20)]


def test_topics_are_created_with_the_configured_partitions(settings: Settings) -> None:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        assert consumer.partitions_for_topic(settings.commands_topic) == {0, 1}
        assert consumer.partitions_for_topic(settings.events_topic) == {0, 1}
    finally:
        consumer.close()
