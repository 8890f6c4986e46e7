"""The design's invariants, checked on a fold of the event log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from schemas import EmergencyStatus, UnitStatus
from schemas.events import Event
from schemas.projection import Projection
from tests.conftest import wait_for

ENGAGED = (UnitStatus.DISPATCHED, UnitStatus.ON_SCENE)
HELD = (EmergencyStatus.ASSIGNED, EmergencyStatus.ON_SCENE)


def assert_consistent(fold: Projection) -> None:
    """A unit serves at most one open emergency, an emergency has at most one unit, and
    both sides of every assignment agree (no unit assigned to nothing)."""
    holders: dict[str, list[str]] = defaultdict(list)
    for em in fold.emergencies.values():
        if em.status in HELD:
            assert em.assigned_unit_id, f"{em.id} is {em.status} without a unit"
            holders[em.assigned_unit_id].append(em.id)
            unit = fold.units[em.assigned_unit_id]
            assert unit.emergency_id == em.id and unit.status in ENGAGED, (em, unit)
    for unit_id, ems in holders.items():
        assert len(ems) == 1, f"unit {unit_id} holds {ems}"
    for unit in fold.units.values():
        if unit.status in ENGAGED:
            em = fold.emergencies.get(unit.emergency_id or "")
            assert em is not None and em.status in HELD and em.assigned_unit_id == unit.id, unit
        else:  # a RETURNING unit drives back to its station: a route, no emergency
            assert unit.emergency_id is None, unit
            assert unit.route is None or unit.status == UnitStatus.RETURNING, unit


def wait_consistent(log: Any, timeout: float = 30.0) -> Projection:
    """The fold once ``assert_consistent`` holds. A unit lent to another region (issue 15)
    is freed by its own region after the emergency's region closed the emergency, so right
    after a close's outcome the release may still be on its way; it must arrive."""

    def read() -> Projection:
        log.poll()
        return log.projection()

    return wait_consistent_fold(read, timeout)


def wait_consistent_fold(read: Callable[[], Projection], timeout: float = 30.0) -> Projection:
    """``read()`` (a fold of the log read on) until ``assert_consistent`` holds; if it never
    does within ``timeout``, its assertion is raised."""

    def consistent() -> Projection | None:
        fold = read()
        try:
            assert_consistent(fold)
        except AssertionError:
            return None
        return fold

    try:
        return wait_for(consistent, timeout=timeout, interval=0.2, message="a consistent fold")  # type: ignore[return-value]
    except AssertionError:
        assert_consistent(read())  # the real reason
        raise


def assert_no_divergent_duplicates(events: list[Event]) -> None:
    """An event id seen twice is the same event; an entity version means one state."""
    by_id: dict[str, Event] = {}
    versions: dict[tuple[str, str, int], str] = {}
    for event in events:
        first = by_id.setdefault(event.event_id, event)
        assert first == event, f"event {event.event_id} differs on redelivery"
        for entity in (getattr(event, "emergency", None), getattr(event, "unit", None)):
            if entity is None:
                continue
            key = (type(entity).__name__, entity.id, entity.version)
            body = entity.model_dump_json()
            assert versions.setdefault(key, body) == body, (
                f"two states for {key} (the second in {event.event}, {event.event_id}):\n"
                f"{versions[key]}\n{body}"
            )
