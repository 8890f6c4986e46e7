"""Issue 16: "the snapshot is rebuilt whenever the position moves (every movement tick)".

A snapshot is cached until the log position moves, and with a city's fleet moving that is
every few milliseconds, so a connecting dashboard cost a whole state's encoding on the
event loop. The read model keeps each entity's JSON text while the entity is the same
object (``EntityTexts``) and joins them. What must hold: the snapshot, ``/api/state``,
``/api/emergencies`` and ``/api/units`` say exactly what the state says, for every filter
and for a unit token (no reporters), after any sequence of folds, archives included; and
an unchanged entity is not encoded again.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import api.readmodel as readmodel_module
from api.broadcast import Hub
from api.metrics import ApiMetrics
from api.readmodel import ReadModel, without_reporter
from dispatchwire.settings import Settings
from schemas import encode
from schemas.entities import (
    Emergency,
    EmergencyStatus,
    EmergencyType,
    Reporter,
    Unit,
    UnitType,
)
from schemas.events import (
    EmergencyArchived,
    EmergencyCreated,
    EmergencyUpdated,
    EventBase,
    UnitLocation,
    UnitStatusUpdate,
    event_id_for,
)

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
REGIONS = ("north", "south")


class City:
    """Worker-shaped events for a few emergencies and units, folded into a read model."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.model = ReadModel(Settings(), Hub(), ApiMetrics())
        self.model._resize(1)
        self.offset = 0
        self.units = {
            f"u{i}": Unit(
                id=f"u{i}",
                callsign=f"U{i}",
                type=UnitType.AMBULANCE,
                region=REGIONS[i % 2],
                lat=60.17,
                lon=24.94,
                version=1,
            )
            for i in range(6)
        }
        self.open: dict[str, Emergency] = {}
        self.closed: list[Emergency] = []
        for unit in self.units.values():  # the fleet, as the worker's registrations say it
            self.emit(UnitStatusUpdate, unit.region, unit_id=unit.id, status=unit.status, unit=unit)

    def emit(self, kind: type[EventBase], region: str, **fields: object) -> None:
        """An event of ``kind`` in ``region``, folded as the next record of the log."""
        command_id = f"c{self.offset}"
        event = kind(
            event_id=event_id_for(command_id, 0), command_id=command_id, region=region, **fields
        )
        self.model._fold(0, self.offset, encode(event), 1_700_000_000_000 + self.offset)
        self.offset += 1

    def move(self, unit_id: str, lat: float) -> None:
        """A ``unit_location``: the unit at ``lat``, one version on."""
        unit = self.units[unit_id]
        moved = unit.model_copy(update={"lat": lat, "version": unit.version + 1})
        self.units[unit_id] = moved
        self.emit(
            UnitLocation,
            moved.region,
            unit_id=moved.id,
            lat=moved.lat,
            lon=moved.lon,
            version=moved.version,
        )

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.3 or not self.open:
            n = self.offset
            emergency = Emergency(
                id=f"e{n}",
                region=self.rng.choice(REGIONS),
                type=EmergencyType.MEDICAL,
                priority=2,
                lat=60.17,
                lon=24.94,
                description=f"report {n}",
                reporter=Reporter(name=f"Caller {n}", phone="+358 40 1") if n % 2 else None,
                reported_at=AT,
                version=1,
            )
            self.open[emergency.id] = emergency
            self.emit(EmergencyCreated, emergency.region, emergency=emergency)
        elif roll < 0.7:
            unit = self.units[self.rng.choice(sorted(self.units))]
            self.move(unit.id, unit.lat + 1e-4)
        elif roll < 0.9:
            emergency = self.open.pop(self.rng.choice(sorted(self.open)))
            done = emergency.model_copy(
                update={"status": EmergencyStatus.CANCELLED, "closed_at": AT, "version": 2}
            )
            self.closed.append(done)
            self.emit(EmergencyUpdated, done.region, action="cancelled", emergency=done)
        elif self.closed:
            gone = self.closed.pop(0)
            self.emit(
                EmergencyArchived,
                gone.region,
                emergency_id=gone.id,
                status=gone.status,
                closed_at=AT,
            )


def state_json(model: ReadModel, regions: frozenset[str] | None, redact: bool) -> dict:
    """The state encoded whole, from the projection: what the texts must add up to."""
    state = model.projection.as_json()
    if regions is not None:
        state["emergencies"] = [e for e in state["emergencies"] if e["region"] in regions]
        state["units"] = [u for u in state["units"] if u["region"] in regions]
    if redact:
        state["emergencies"] = [without_reporter(e) for e in state["emergencies"]]
    return {**state, "position": model.position_id}


def test_the_snapshot_and_the_state_say_what_the_state_says_after_every_fold():
    city = City(seed=16)
    filters = (None, frozenset({"north"}), frozenset({"south", "elsewhere"}))
    for _ in range(300):
        city.step()
        model = city.model
        for regions in filters:
            for redact in (False, True):
                reset = city.offset % 2 == 0
                expected = {**state_json(model, regions, redact), "reset": reset}
                got = json.loads(model.snapshot(regions, reset=reset, redact=redact).data)
                assert got == expected, (regions, redact)
        assert json.loads(model.state_text()) == state_json(model, None, False)
        whole = state_json(model, None, True)  # /api/emergencies and /api/units, unit token
        assert json.loads(model.emergencies_text(redact=True)) == whole["emergencies"]
        assert json.loads(model.units_text()) == whole["units"]
    assert city.model.projection.archived  # archives were folded on the way
    assert len(city.model.projection.units) == 6
    reporters = [e for e in json.loads(city.model.state_text(redact=True))["emergencies"]]
    assert reporters and all(e["reporter"] is None for e in reporters)


def test_a_snapshot_encodes_only_the_entities_that_changed(monkeypatch):
    city = City(seed=7)
    for _ in range(120):
        city.step()
    city.model.snapshot()
    encoded: list[str] = []
    real = readmodel_module._entity_text

    def counting(entity: Emergency | Unit) -> str:
        encoded.append(entity.id)
        return real(entity)

    monkeypatch.setattr(city.model._texts["units"], "_encode", counting)
    monkeypatch.setattr(city.model._texts["emergencies"], "_encode", counting)
    city.move("u3", 60.2)
    snapshot = json.loads(city.model.snapshot().data)
    assert encoded == ["u3"]  # one position moved: one entity encoded, not the whole state
    assert [u["lat"] for u in snapshot["units"] if u["id"] == "u3"] == [60.2]
