"""The worker's current state: one Faust table, changelog-backed, co-partitioned by region.

Everything a region owns lives in ONE table (keys are namespaced), on the partition of the
command that wrote it, because one table means one changelog topic-partition per region,
and Kafka keeps a partition's records in the order we wrote them. A crash can cut that
sequence anywhere but never reorder it, which is what crash safety rests on (see
``streams.app``)::

    e:<emergency_id>   Emergency (JSON)
    u:<unit_id>        Unit (JSON)
    r:<region>         sorted ids of the region's units (so dispatch needn't scan)
    regions            regions that have units (for the movement timer)
    c:<command_id>     Record: the outcome a command produced (events + entity states)
    m:<unit_id>        Record of the unit's latest movement tick (ticks are many; one
                       record per unit keeps the table from growing with time)
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from schemas import Emergency, Unit, decode_event
from schemas.events import Event
from streams.decisions import Outcome

TABLE_NAME = "dispatch-state"


class DispatchState:
    """Typed access to the table (any mutable mapping: a Faust table or, in tests, a dict)."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    # -- reads (the ``decisions.State`` protocol) ----------------------------------------
    def emergency(self, emergency_id: str) -> Emergency | None:
        raw = self.table.get(f"e:{emergency_id}")
        return Emergency.model_validate(raw) if raw is not None else None

    def unit(self, unit_id: str) -> Unit | None:
        raw = self.table.get(f"u:{unit_id}")
        return Unit.model_validate(raw) if raw is not None else None

    def units_in_region(self, region: str) -> list[Unit]:
        units = (self.unit(uid) for uid in self.table.get(f"r:{region}") or [])
        return [u for u in units if u is not None]

    def regions(self) -> list[str]:
        return list(self.table.get("regions") or [])

    def moving_units(self) -> Iterator[Unit]:
        for region in self.regions():
            for unit in self.units_in_region(region):
                if unit.status == "DISPATCHED":
                    yield unit

    # -- writes --------------------------------------------------------------------------
    def put_emergency(self, emergency: Emergency) -> None:
        current = self.table.get(f"e:{emergency.id}")
        if current is None or current["version"] < emergency.version:
            self.table[f"e:{emergency.id}"] = emergency.model_dump(mode="json")

    def put_unit(self, unit: Unit) -> None:
        current = self.table.get(f"u:{unit.id}")
        if current is not None and current["version"] >= unit.version:
            return
        self.table[f"u:{unit.id}"] = unit.model_dump(mode="json")
        members = self.table.get(f"r:{unit.region}") or []
        if unit.id not in members:
            self.table[f"r:{unit.region}"] = sorted([*members, unit.id])
            regions = self.regions()
            if unit.region not in regions:
                self.table["regions"] = sorted([*regions, unit.region])

    def apply(self, outcome: Outcome) -> None:
        """Store the entity states of an outcome; older versions never overwrite newer."""
        for emergency in outcome.emergencies:
            self.put_emergency(emergency)
        for unit in outcome.units:
            self.put_unit(unit)

    # -- records of processed commands ---------------------------------------------------
    @staticmethod
    def record_key(command_id: str, movement_unit: str | None) -> str:
        return f"m:{movement_unit}" if movement_unit else f"c:{command_id}"

    def record(self, key: str, command_id: str) -> Outcome | None:
        raw = self.table.get(key)
        if raw is None or raw.get("command_id") != command_id:
            return None
        return outcome_from_json(raw)

    def put_record(self, key: str, command_id: str, outcome: Outcome) -> None:
        self.table[key] = {"command_id": command_id, **outcome_to_json(outcome)}

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """``{"emergencies": [...], "units": [...]}`` sorted by id, like ``Projection.as_json``."""
        emergencies, units = {}, {}
        for key, value in list(self.table.items()):
            if key.startswith("e:"):
                emergencies[key[2:]] = value
            elif key.startswith("u:"):
                units[key[2:]] = value
        return {
            "emergencies": [emergencies[k] for k in sorted(emergencies)],
            "units": [units[k] for k in sorted(units)],
        }


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "events": [e.model_dump(mode="json") for e in outcome.events],
        "emergencies": [e.model_dump(mode="json") for e in outcome.emergencies],
        "units": [u.model_dump(mode="json") for u in outcome.units],
    }


def outcome_from_json(raw: dict[str, Any]) -> Outcome:
    events: list[Event] = [decode_event(e) for e in raw["events"]]
    return Outcome(
        events=events,
        emergencies=[Emergency.model_validate(e) for e in raw["emergencies"]],
        units=[Unit.model_validate(u) for u in raw["units"]],
    )
