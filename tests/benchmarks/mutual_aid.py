"""Dispatch decision latency (issue 15): from a ``dispatch_emergency`` command sent to the
``emergency_updated`` (assigned) that answers it, same-region vs cross-region (mutual aid).

One real worker (4 partitions, one per Helsinki region) and one ambulance in hki-nw. The
same-region case dispatches hki-nw emergencies (one step on one partition); the
cross-region case dispatches hki-se emergencies, which hki-se has no unit for, so each goes
reserve (hki-nw) -> answer (hki-se) over the commands topic. One dispatch at a time, each
emergency completed before the next, so the figure is the decision's path, not a queue.
The load average at the end of each case is recorded beside it: the machine is shared.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from dispatchwire.settings import Settings
from tests.benchmarks import product
from tests.benchmarks.procs import SERVER_CORE, wait_http
from tests.benchmarks.report import Row

BENCH = "dispatch decision"
LENDER, NEEDY = "hki-nw", "hki-se"
AT = (60.1712, 24.9440)
TIMEOUT_S = 30.0


class Bus:
    """Sends commands and resolves the outcome event of each command id."""

    def __init__(self, settings: Settings) -> None:
        from infra import clients
        from infra.topics import region_partitioner

        self.settings = settings
        self.producer = clients.aio_producer(
            settings, partitioner=region_partitioner(settings), linger_ms=0
        )
        self.consumer = clients.aio_consumer(
            settings, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        self.waiting: dict[str, asyncio.Future[tuple[float, Any]]] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        from infra.clients import partitions_of

        await self.producer.start()
        await self.consumer.start()
        topic = self.settings.events_topic
        tps = [TopicPartition(topic, p) for p in await partitions_of(self.consumer, topic)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the lazy seek now, before anything is sent
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from schemas import decode_event

        while True:
            for records in (await self.consumer.getmany(timeout_ms=100)).values():
                at = time.perf_counter()
                for record in records:
                    event = decode_event(record.value)
                    # a command's first event is its outcome (a cross-region dispatch's
                    # steps have their own command ids; its outcome has the dispatch's)
                    future = self.waiting.get(event.command_id)
                    if future and not future.done():
                        future.set_result((at, event))

    async def ask(self, command: Any) -> tuple[float, Any]:
        """Send ``command``; (seconds to its outcome, the outcome event)."""
        from schemas import encode

        future = asyncio.get_running_loop().create_future()
        self.waiting[command.command_id] = future
        sent = time.perf_counter()
        await self.producer.send_and_wait(
            self.settings.commands_topic, encode(command), key=command.region.encode()
        )
        at, event = await asyncio.wait_for(future, TIMEOUT_S)
        del self.waiting[command.command_id]
        return at - sent, event

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.producer.stop()
        await self.consumer.stop()


async def _measure(settings: Settings, count: int) -> list[Row]:
    from schemas import (
        CompleteEmergency,
        DispatchEmergency,
        EmergencyType,
        RegisterUnit,
        ReportEmergency,
        UnitType,
    )

    bus = Bus(settings)
    await bus.start()
    rows = []
    try:
        await bus.ask(
            RegisterUnit(
                region=LENDER,
                unit_id="bench-amb",
                callsign="BENCH1",
                type=UnitType.AMBULANCE,
                lat=AT[0],
                lon=AT[1],
            )
        )
        await asyncio.sleep(0.5)  # the unit's state reaches the fleet view (dispatch.units)
        for case, region in (("same-region", LENDER), ("cross-region (mutual aid)", NEEDY)):
            latencies, failed = [], 0
            for _ in range(count):
                report = ReportEmergency(
                    region=region, type=EmergencyType.MEDICAL, priority=2, lat=AT[0], lon=AT[1]
                )
                await bus.ask(report)
                took, event = await bus.ask(
                    DispatchEmergency(region=region, emergency_id=report.emergency_id)
                )
                if event.event != "emergency_updated":
                    failed += 1
                    continue
                latencies.append(took * 1000)
                await bus.ask(CompleteEmergency(region=region, emergency_id=report.emergency_id))
            load = os.getloadavg()[0]
            q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [None] * 99
            rows.append(
                Row(
                    BENCH,
                    case,
                    {"dispatches": count},
                    {
                        "assigned": len(latencies),
                        "p50 ms": q[49],
                        "p99 ms": q[98],
                        "load 1m": round(load, 2),
                    },
                    f"{failed} not assigned" if failed else "",
                )
            )
    finally:
        await bus.stop()
    return rows


def run(bootstrap: str, count: int) -> list[Row]:
    subjects = ("same-region", "cross-region (mutual aid)")
    why = product.available("worker")
    if why:
        return [Row.not_measured(BENCH, s, why) for s in subjects]
    from infra.topics import ensure_topics

    settings = product.bench_settings(bootstrap, partitions=4)
    try:
        ensure_topics(settings)
        with product.worker(settings, SERVER_CORE, name="mutual-aid-worker") as proc:
            wait_http(settings.worker_web_port, "/dispatch/ready/", proc, timeout=120.0)
            return asyncio.run(_measure(settings, count))
    except Exception as exc:
        return [Row.not_measured(BENCH, s, f"run failed: {exc!r}") for s in subjects]
