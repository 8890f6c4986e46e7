"""How a worker sees the units of regions it does not own (issue 15): the fleet view.

Every unit state the worker stores is also published to ``dispatch.units`` (compacted,
keyed by unit id; ``streams.processing``), by the one partition that owns the unit. Every
worker reads that topic whole, with a plain consumer outside its consumer group, and keeps
the newest version of each unit. Dispatch ranks from it (``DispatchState.fleet``).

Why not a Faust ``GlobalTable``: in faust-streaming, global tables are known to miss
updates with several workers (faust-streaming/faust#283, open) and around standby
recovery (#212); this view is a few lines we can reason about, and compaction bounds what a
starting worker reads to one record per unit.

How stale. A unit state reaches the view after its command's batch was published (the
worker's batch window, 5 ms, plus the producer's linger, 5 ms) and the view's next fetch
(at most ``FETCH_WAIT_MS``): tens of milliseconds while all is well, longer while the
owning worker is down or recovering (then the view shows the unit's last published state).
Why that is safe: the view only ranks. Taking a unit of another region is decided by the
unit's owner (``reserve_unit``), against its own table, one command at a time, so a stale
AVAILABLE costs at most a refused reservation and the next candidate, never a double
dispatch.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition

from dispatchwire.settings import Settings
from infra import clients
from schemas import Unit
from streams.state import stored_version

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 50
RETRY_AFTER_S = 1.0


class FleetView:
    """Every unit's latest known state, from the ``dispatch.units`` topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._units: dict[str, tuple[int, bytes]] = {}  # id -> (version, JSON)
        self._parsed: dict[str, Unit] = {}
        # set once the view has read what the topic held when the worker started
        self.caught_up = asyncio.Event()

    def put(self, raw: bytes) -> None:
        version = stored_version(raw)
        unit = Unit.model_validate_json(raw)
        known = self._units.get(unit.id)
        if known is None or known[0] < version:
            self._units[unit.id] = (version, raw)
            self._parsed[unit.id] = unit

    def units(self) -> list[Unit]:
        return list(self._parsed.values())

    async def follow(self) -> None:
        """Read the topic from its start, forever (a Faust task; cancelled at shutdown)."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "fleet view: reading %s failed (%s); retrying", self.settings.units_topic, exc
                )
                await asyncio.sleep(RETRY_AFTER_S)

    async def _follow(self) -> None:
        consumer = clients.aio_consumer(
            self.settings,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        await consumer.start()
        try:
            topic = self.settings.units_topic
            tps = [TopicPartition(topic, p) for p in await clients.partitions_of(consumer, topic)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            target = await consumer.end_offsets(tps)
            while True:
                if not self.caught_up.is_set() and all(
                    await asyncio.gather(*(self._reached(consumer, tp, target[tp]) for tp in tps))
                ):
                    self.caught_up.set()
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        if record.value:
                            self.put(record.value)
        finally:
            await consumer.stop()

    @staticmethod
    async def _reached(consumer: object, tp: TopicPartition, end: int) -> bool:
        return await consumer.position(tp) >= end  # type: ignore[attr-defined]
