"""The floor: raw aiokafka produce -> consume latency on the same broker, one topic, open loop."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid

from tests.benchmarks.loadclient import percentile
from tests.benchmarks.report import Row

STAMP = struct.Struct("!Id")


async def measure(bootstrap: str, count: int, rate: float, timeout_s: float = 60.0) -> Row:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="dw-bench")
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest",
        group_id=None,
        fetch_max_wait_ms=500,
    )
    latencies: list[float] = []
    pad = b"x" * 600  # about the size of an emergency_created event
    try:
        await producer.start()
        await consumer.start()
        # The consumer is positioned once it has an assignment and a fetch position.
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for part in consumer.assignment():
            await consumer.position(part)

        async def consume() -> None:
            while len(latencies) < count:
                batches = await consumer.getmany(timeout_ms=200)
                arrived = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        _, sent = STAMP.unpack_from(record.value)
                        latencies.append(arrived - sent)

        reader = asyncio.create_task(consume())
        t0 = time.perf_counter() + 0.05
        for i in range(count):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, STAMP.pack(i, time.perf_counter()) + pad)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, timeout_s)
    finally:
        await consumer.stop()
        await producer.stop()
        with contextlib.suppress(Exception):
            admin.delete_topics([topic])
        admin.close()
    latencies.sort()
    ms = [v * 1000 for v in latencies]
    return Row(
        "kafka floor",
        "raw aiokafka produce->consume",
        {"events": count, "offered/s": rate},
        {
            "received": len(ms),
            "p50 ms": percentile(ms, 0.5),
            "p99 ms": percentile(ms, 0.99),
            "p99.9 ms": percentile(ms, 0.999),
            "max ms": ms[-1] if ms else None,
        },
        "" if len(ms) == count else f"{count - len(ms)} not received in time",
    )


def run(bootstrap: str, count: int = 2_000, rate: float = 200.0) -> Row:
    try:
        return asyncio.run(measure(bootstrap, count, rate))
    except Exception as exc:
        return Row.not_measured(
            "kafka floor", "raw aiokafka produce->consume", f"run failed: {exc!r}"
        )
