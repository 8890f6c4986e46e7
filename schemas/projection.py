"""Current state as a fold of the event log.

The worker's tables, the API's read model, the DuckDB sink's current-state tables and
replay all mean the same thing by "current state": this fold. It is idempotent: an entity
only moves forward in ``version``, so an event applied twice (a redelivery, a replay that
overlaps) changes nothing the second time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schemas.entities import Emergency, Unit
from schemas.events import (
    CommandRejectedEvent,
    CommandRepeated,
    EmergencyArchived,
    EmergencyCreated,
    EmergencyUpdated,
    Event,
    UnitLocation,
    UnitStatusUpdate,
)


@dataclass
class Projection:
    emergencies: dict[str, Emergency] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    # Archived emergencies (issue 16): they left current state; their archive events are
    # remembered (in archive order) so a re-published older event of theirs cannot bring
    # them back and a lookup can say where they went. ``archive_memory`` bounds how long
    # (None: for ever, as a replay of a window wants), by each region's own clock: a
    # region's events are one partition's, in order, but a fold reads the partitions in
    # whatever interleaving its fetches give (a whole-log fold may read one partition weeks
    # ahead of another), so one queue for all regions kept a lagging partition's archive
    # events behind a leading one's newer head: 57,747 remembered after a compressed year
    # instead of about 8,000 (the year bench). Per region, what is remembered does not
    # depend on the read order (``_archive_order``: region -> (occurred_at, id), in order).
    archived: dict[str, EmergencyArchived] = field(default_factory=dict)
    archive_memory: timedelta | None = None
    _archive_order: dict[str, deque[tuple[datetime, str]]] = field(default_factory=dict, repr=False)

    def _put_emergency(self, emergency: Emergency) -> bool:
        if emergency.id in self.archived:
            return False
        current = self.emergencies.get(emergency.id)
        if current is not None and current.version >= emergency.version:
            return False
        self.emergencies[emergency.id] = emergency
        return True

    def _put_unit(self, unit: Unit) -> bool:
        current = self.units.get(unit.id)
        if current is not None and current.version >= unit.version:
            return False
        self.units[unit.id] = unit
        return True

    def apply(self, event: Event) -> bool:
        """Fold one event in; returns whether anything changed."""
        if isinstance(event, EmergencyCreated):
            return self._put_emergency(event.emergency)
        if isinstance(event, EmergencyUpdated):
            changed = self._put_emergency(event.emergency)
            if event.unit is not None:
                changed = self._put_unit(event.unit) or changed
            return changed
        if isinstance(event, UnitStatusUpdate):
            return self._put_unit(event.unit)
        if isinstance(event, UnitLocation):
            unit = self.units.get(event.unit_id)
            if unit is None or unit.version >= event.version:
                return False
            self.units[unit.id] = unit.model_copy(
                update={
                    "lat": event.lat,
                    "lon": event.lon,
                    "heading": event.heading,
                    "eta_s": event.eta_s,
                    "route_index": event.route_index,
                    "version": event.version,
                    "updated_at": event.occurred_at,
                }
            )
            return True
        if isinstance(event, CommandRejectedEvent | CommandRepeated):
            return False
        if isinstance(event, EmergencyArchived):
            return self._archive(event)
        raise TypeError(f"unknown event {type(event).__name__}")

    def _archive(self, event: EmergencyArchived) -> bool:
        gone = self.emergencies.pop(event.emergency_id, None) is not None
        if event.emergency_id not in self.archived:
            self.archived[event.emergency_id] = event
            self._queue_archived(event)
        if self.archive_memory is not None:
            self.forget_archived(event.region, event.occurred_at - self.archive_memory)
        return gone

    def _queue_archived(self, event: EmergencyArchived) -> None:
        order = self._archive_order.setdefault(event.region, deque())
        order.append((event.occurred_at, event.emergency_id))

    def forget_archived(self, region: str, before: datetime) -> None:
        """Forget ``region``'s archive events older than ``before``."""
        order = self._archive_order.get(region)
        while order and order[0][0] < before:
            self.archived.pop(order.popleft()[1], None)

    def remember_archived(self) -> None:
        """Rebuild the per-region archive order from ``archived`` (in archive order), as
        a restored checkpoint holds it; with a memory, forget what each region's newest
        archive event puts outside it (a shorter memory than the writer's)."""
        self._archive_order = {}
        for event in self.archived.values():
            self._queue_archived(event)
        if self.archive_memory is not None:
            for region, order in self._archive_order.items():
                latest = max(at for at, _ in order)
                self.forget_archived(region, latest - self.archive_memory)

    def apply_all(self, events: Iterable[Event]) -> Projection:
        for event in events:
            self.apply(event)
        return self

    def as_json(self) -> dict[str, Any]:
        """``{"emergencies": [...], "units": [...]}``, each sorted by id."""
        return {
            "emergencies": [
                self.emergencies[k].model_dump(mode="json") for k in sorted(self.emergencies)
            ],
            "units": [self.units[k].model_dump(mode="json") for k in sorted(self.units)],
        }
