"""Issue 16, part 2: the worker keeps up with a city's fleet.

With 1,000 GPS fixes a second offered the worker turned ~410 a second into events while
using a quarter of a core. Two per-message costs of Faust's consumer path made that: its
fetcher handed each message to the stream through ``wait_first`` (four tasks and several
turns of the event loop per message), and the agent cut its batches by a 2 ms window of wall
time, so a backlog still came in batches of one or two commands, each paying the batch's
fixed costs (``streams.app``: ``_deliver_eagerly``, ``ready_batches``).

Here: the delivery of a message that does not have to wait creates no task (counted with a
task factory), one that waits still yields to ``suspend_flow`` (a rebalance), and a backlog
of 1,000 commands reaches the agent in a few large batches, not in hundreds of small ones
(the worker's ``/dispatch/batches/`` page).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from dispatchwire.settings import Settings
from schemas.events import UnitLocation, UnitStatusUpdate
from streams.app import BATCH_MAX, create_faust_app
from streams.routing import Router
from tests.streams.conftest import run_backlog
from tests.streams.world import fleet_backlog

UNITS = 100
FIXES = 900


class NoRoutes(Router):
    """Nothing here routes."""


def worker_consumer(tmp_path: Path) -> Any:
    """The consumer of the worker's app as ``create_faust_app`` builds it (not started)."""
    settings = Settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path, worker_web_port=0)
    return create_faust_app(settings, router=NoRoutes()).consumer


def run_counting_tasks(loop: asyncio.AbstractEventLoop, main: Any) -> tuple[Any, int]:
    """Run ``main()`` in ``loop`` (the consumer's); returns its result and how many tasks
    it created."""
    created = 0

    def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        nonlocal created
        created += 1
        return asyncio.Task(coro, loop=loop)

    async def counted() -> tuple[Any, int]:
        loop.set_task_factory(factory)
        try:
            return await main(), created
        finally:
            loop.set_task_factory(None)

    return loop.run_until_complete(counted())


def test_a_message_that_need_not_wait_is_delivered_without_a_task(tmp_path):
    consumer = worker_consumer(tmp_path)
    delivered: list[int] = []

    async def deliver(n: int) -> int:  # like Faust's conductor callback with room in its queue
        delivered.append(n)
        return n

    async def main() -> list[Any]:
        results = []
        for n in range(10):
            results.append(await consumer.wait_first(deliver(n), consumer.suspend_flow.wait()))
        return results

    results, tasks = run_counting_tasks(consumer.loop, main)
    assert delivered == list(range(10))
    assert [(r.results, r.stopped) for r in results] == [([n], False) for n in range(10)]
    assert tasks == 0, f"{tasks} tasks for 10 deliveries (Faust's wait_first makes 4 each)"


def test_a_delivery_that_waits_finishes_or_yields_to_a_rebalance(tmp_path):
    consumer = worker_consumer(tmp_path)
    steps: list[str] = []

    async def deliver(gate: asyncio.Future[None]) -> str:  # a full queue: waits for room
        steps.append("started")
        try:
            await gate
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise
        steps.append("delivered")
        return "ok"

    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        room: asyncio.Future[None] = loop.create_future()
        loop.call_soon(room.set_result, None)
        finished = await consumer.wait_first(deliver(room), consumer.suspend_flow.wait())
        never: asyncio.Future[None] = loop.create_future()
        loop.call_soon(consumer.suspend_flow.set)  # a rebalance starts while it waits
        interrupted = await consumer.wait_first(deliver(never), consumer.suspend_flow.wait())
        await asyncio.sleep(0)  # the cancelled delivery runs its except clause
        return finished, interrupted

    finished, interrupted = consumer.loop.run_until_complete(main())
    assert finished.results == ["ok"] and not finished.stopped
    assert interrupted.results == [True]  # suspend_flow won; the delivery was cancelled
    assert steps == ["started", "delivered", "started", "cancelled"]


def test_a_backlog_reaches_the_agent_in_large_batches(backlog_settings, late_worker):
    """1,000 commands wait in the partition before the worker starts: 100 registrations
    and 900 GPS fixes. They were taken in ~500 batches of one or two before the fix."""
    units, fixes = fleet_backlog("b", UNITS, FIXES)
    worker, _, events = run_backlog(
        backlog_settings, late_worker, [*units, *fixes], fixes[-1].command_id
    )
    registered = [e for e in events if isinstance(e, UnitStatusUpdate)]
    moved = [e for e in events if isinstance(e, UnitLocation)]
    assert len(registered) == UNITS and len(moved) == FIXES  # every command applied once
    counts = httpx.get(f"{worker.url}/dispatch/batches/", timeout=10).json()
    assert counts["commands"] >= UNITS + FIXES
    assert counts["largest"] <= BATCH_MAX
    # a few fetches' worth: 2 batches if one fetch holds all 1,000, a handful if not
    assert counts["batches"] <= 20, counts
