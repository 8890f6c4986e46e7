"""How a worker sees the units of regions it does not own (issue 15): the fleet view.

Every unit state the worker stores is also published to ``dispatch.units`` (compacted,
keyed by unit id; ``streams.processing``), by the one partition that owns the unit. Every
worker reads that topic whole, with a plain consumer outside its consumer group, and keeps
the newest version of each unit. Dispatch ranks from it (``DispatchState.fleet``).

Why not a Faust ``GlobalTable``: in faust-streaming, global tables are known to miss
updates with several workers (faust-streaming/faust#283, open) and around standby
recovery (#212); this view is a few lines we can reason about, and compaction bounds what a
starting worker reads to one record per unit.

How stale. A unit state reaches the view after its command's batch was published and the
view's next fetch, which the broker answers once it holds ``FETCH_MIN_BYTES`` for it or
``FETCH_WAIT_MS`` have passed: tens of milliseconds while all is well, longer while the
owning worker is down or recovering (then the view shows the unit's last published state).

What it costs. With a city's fleet moving, every GPS fix a worker applies is one more unit
state on the topic (1,000 units at 1 Hz: ~1,000 records a second, each read by every
worker), and dispatches read the view a few times a second. So the view asks for records in
fetches of ``FETCH_MIN_BYTES`` (not one fetch per record: each fetch was a request, a
response and two socket writes in the worker's event loop), takes each record's unit id
from its key and its version from its last field, and parses a unit only when a dispatch
asks for it and its state changed since (``units``).
Why that is safe: the view only ranks. Taking a unit of another region is decided by the
unit's owner (``reserve_unit``), against its own table, one command at a time, so a stale
AVAILABLE costs at most a refused reservation and the next candidate, never a double
dispatch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import TopicPartition

from dispatchwire.settings import Settings
from infra import clients
from schemas import Unit
from streams.state import stored_version

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 50
FETCH_MIN_BYTES = 64 * 1024  # or FETCH_WAIT_MS, whichever comes first
RETRY_AFTER_S = 1.0


class FleetView:
    """Every unit's latest known state, from the ``dispatch.units`` topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._units: dict[str, tuple[int, bytes]] = {}  # id -> (version, JSON)
        self._parsed: dict[str, Unit] = {}  # id -> its JSON parsed, once a dispatch asked
        # set once the view has read what the topic held when the worker started
        self.caught_up = asyncio.Event()

    def put(self, raw: bytes, key: bytes | None = None) -> None:
        """A unit state read from the topic, keyed by its unit id (parsed if the key is
        missing); kept if newer than the one known. One that cannot be read is left out
        and said (re-reading the topic would only meet it again)."""
        try:
            version = stored_version(raw)
            unit_id = key.decode() if key else Unit.model_validate_json(raw).id
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "fleet view: a record of %s is left out: %s", self.settings.units_topic, exc
            )
            return
        known = self._units.get(unit_id)
        if known is None or known[0] < version:
            self._units[unit_id] = (version, raw)
            self._parsed.pop(unit_id, None)

    def units(self, known: Mapping[str, int] | None = None) -> list[Unit]:
        """Every unit's latest state, parsing those that changed since the last call, except
        the units ``known`` (unit id -> version) holds at the same or a newer version: a
        worker's own units, which its table gives (with a city's fleet moving, ~300 of
        them changed between two dispatches). A record that is not a unit state of its
        key's unit is left out (and said once)."""
        parsed, out = self._parsed, []
        for unit_id, (version, raw) in list(self._units.items()):
            if known is not None and known.get(unit_id, -1) >= version:
                continue
            unit = parsed.get(unit_id)
            if unit is None:
                try:
                    unit = Unit.model_validate_json(raw)
                    if unit.id != unit_id:
                        raise ValueError(f"it is unit {unit.id}'s state")
                except ValueError as exc:
                    log.warning("fleet view: the record of unit %s is left out: %s", unit_id, exc)
                    del self._units[unit_id]
                    continue
                parsed[unit_id] = unit
            out.append(unit)
        return out

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
            fetch_min_bytes=FETCH_MIN_BYTES,
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
                            self.put(record.value, record.key)
        finally:
            await consumer.stop()

    @staticmethod
    async def _reached(consumer: object, tp: TopicPartition, end: int) -> bool:
        return await consumer.position(tp) >= end  # type: ignore[attr-defined]
