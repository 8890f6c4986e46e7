"""The worker's current state: one Faust table, changelog-backed, co-partitioned by region.

Everything a region owns lives in ONE table (keys are namespaced), on the partition of the
command that wrote it, because one table means one changelog topic-partition per region,
and Kafka keeps a partition's records in the order we wrote them. A crash can cut that
sequence anywhere but never reorder it, which is what crash safety rests on (see
``streams.processing``)::

    e:<emergency_id>   Emergency (JSON)
    u:<unit_id>        Unit (JSON)
    r:<region>         sorted ids of the region's units (so dispatch needn't scan)
    regions            regions that have units (for the movement timer)
    c:<command_id>     Record: the outcome a command produced (events + entity states)
                       and the fingerprint of the command that produced it
    h:<emergency_id>   [saga id, time]: a mutual-aid reservation is out for it (issue 15)
    m:<unit_id>        Record of the unit's latest movement tick (ticks are many; one
                       record per unit keeps the table from growing with time)

Values are JSON *text* (``str``; ``bytes`` once recovered from the changelog, whose value
serializer is ``raw``), encoded once by pydantic and never re-encoded by Faust: an entity's
text is the same string in its record, in its ``e:``/``u:`` entry and inside the event
that is published. A record embeds those texts as JSON (not as escaped strings)::

    {"command_id":"c-1","fingerprint":"9f..","events":[{...},...],"emergencies":[...],...}

A command id is chosen by the client, so two clients can send different commands under one
id. The fingerprint (``command_fingerprint``) tells a true retry (same command, only
``issued_at`` differs) from such a collision, which is refused, not answered with the first
command's outcome.

Reads parse only what they need: a record check compares the prefix, a version check
reads the trailing ``"version":N`` (pydantic writes ``version`` last for both entities).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, MutableMapping
from datetime import datetime
from typing import Any, Protocol, cast

from schemas import Emergency, Unit, decode_command, decode_event, encode
from schemas.commands import CommandBase
from schemas.events import CommandRejectedEvent, Event
from streams.decisions import Outcome
from streams.ranking import DispatchPolicy

# v2: values are raw JSON text (v1 was Faust-json-serialized dicts); a new name means a
# new changelog topic, so a v1 changelog is never read with the v2 format.
TABLE_NAME = "dispatch-state-v2"

Text = str | bytes


def _text(raw: Text) -> str:
    return raw if isinstance(raw, str) else raw.decode()


def stored_version(raw: Text) -> int:
    """The ``version`` of a stored entity: its last field, so no full parse is needed."""
    text = _text(raw)
    _, found, tail = text.rpartition('"version":')
    if found:
        try:
            return int(tail.rstrip(" }"))
        except ValueError:
            pass
    return int(json.loads(text)["version"])


class DispatchState:
    """Typed access to the table (any mutable mapping: a Faust table or, in tests, a dict)."""

    def __init__(
        self,
        table: MutableMapping[str, Any],
        fleet_view: FleetSource | None = None,
        policy: DispatchPolicy | None = None,
    ) -> None:
        self.table = table
        # Mutual aid (issue 15): other regions' units, read-only and maybe a little stale
        # (``streams.fleetview``); the reserve step on the unit's owner makes that safe.
        self.fleet_view = fleet_view
        self.dispatch_policy = policy or DispatchPolicy()

    # -- reads (the ``decisions.State`` protocol) ----------------------------------------
    def emergency(self, emergency_id: str) -> Emergency | None:
        raw = self.table.get(f"e:{emergency_id}")
        return Emergency.model_validate_json(raw) if raw is not None else None

    def unit(self, unit_id: str) -> Unit | None:
        raw = self.table.get(f"u:{unit_id}")
        return Unit.model_validate_json(raw) if raw is not None else None

    def _list(self, key: str) -> list[str]:
        raw = self.table.get(key)
        return json.loads(raw) if raw is not None else []

    def units_in_region(self, region: str) -> list[Unit]:
        units = (self.unit(uid) for uid in self._list(f"r:{region}"))
        return [u for u in units if u is not None]

    def fleet(self) -> list[Unit]:
        """Every unit of the city: this table's (authoritative) and the fleet view's, the
        newer version of each."""
        units = {u.id: u for region in self.regions() for u in self.units_in_region(region)}
        if self.fleet_view is not None:
            for unit in self.fleet_view.units():
                mine = units.get(unit.id)
                if mine is None or mine.version < unit.version:
                    units[unit.id] = unit
        return list(units.values())

    def hold(self, emergency_id: str) -> tuple[str, datetime] | None:
        raw = self.table.get(f"h:{emergency_id}")
        held = json.loads(raw) if raw is not None else None
        if not held:
            return None
        saga_id, at = held
        return saga_id, datetime.fromisoformat(at)

    def regions(self) -> list[str]:
        return self._list("regions")

    def moving_units(self) -> Iterator[Unit]:
        for region in self.regions():
            for unit in self.units_in_region(region):
                if unit.status in ("DISPATCHED", "RETURNING"):
                    yield unit

    # -- writes --------------------------------------------------------------------------
    def _put_if_newer(self, key: str, version: int, text: str) -> bool:
        current = self.table.get(key)
        if current is not None and stored_version(current) >= version:
            return False
        self.table[key] = text
        return True

    def put_emergency(self, emergency: Emergency, text: str | None = None) -> None:
        self._put_if_newer(
            f"e:{emergency.id}", emergency.version, text or emergency.model_dump_json()
        )

    def put_unit(self, unit: Unit, text: str | None = None) -> None:
        if not self._put_if_newer(f"u:{unit.id}", unit.version, text or unit.model_dump_json()):
            return
        members = self._list(f"r:{unit.region}")
        if unit.id not in members:
            self.table[f"r:{unit.region}"] = json.dumps(sorted([*members, unit.id]))
            regions = self.regions()
            if unit.region not in regions:
                self.table["regions"] = json.dumps(sorted([*regions, unit.region]))

    def apply(self, outcome: Outcome) -> None:
        """Store the entity states of an outcome; older versions never overwrite newer."""
        enc = encoded(outcome)
        for emergency, text in zip(outcome.emergencies, enc.emergencies, strict=True):
            self.put_emergency(emergency, text)
        for unit, text in zip(outcome.units, enc.units, strict=True):
            self.put_unit(unit, text)
        for emergency_id, hold in outcome.holds.items():
            key = f"h:{emergency_id}"
            if hold is not None:
                self.table[key] = json.dumps([hold[0], hold[1].isoformat()])
            elif key in self.table:
                self.table[key] = "null"  # no delete: writes reach the changelog as sets only

    # -- records of processed commands ---------------------------------------------------
    @staticmethod
    def record_key(command_id: str, movement_unit: str | None) -> str:
        return f"m:{movement_unit}" if movement_unit else f"c:{command_id}"

    def record(self, key: str, command_id: str) -> Outcome | None:
        raw = self.table.get(key)
        if raw is None or not _text(raw).startswith(_record_head(command_id)):
            return None
        return outcome_from_json(raw)

    def same_command(self, key: str, fingerprint: str) -> bool:
        """Whether the record at ``key`` was made by the command of ``fingerprint``
        (records written before fingerprints existed count as the same)."""
        raw = self.table.get(key)
        if raw is None:
            return False
        head = _text(raw)[:FINGERPRINT_SCAN]
        _, found, tail = head.partition(',"fingerprint":"')
        return not found or tail.startswith(fingerprint + '"')

    def put_record(
        self, key: str, command_id: str, outcome: Outcome, fingerprint: str | None = None
    ) -> None:
        self.table[key] = record_text(command_id, outcome, fingerprint)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """``{"emergencies": [...], "units": [...]}`` sorted by id, like ``Projection.as_json``."""
        emergencies, units = {}, {}
        for key, value in list(self.table.items()):
            if key.startswith("e:"):
                emergencies[key[2:]] = value
            elif key.startswith("u:"):
                units[key[2:]] = value
        return {
            "emergencies": [json.loads(emergencies[k]) for k in sorted(emergencies)],
            "units": [json.loads(units[k]) for k in sorted(units)],
        }


class FleetSource(Protocol):
    def units(self) -> Iterable[Unit]: ...


class Encoded:
    """An outcome's JSON texts, made once: the same strings go to the record, the entity
    entries and (as bytes) the events topic."""

    __slots__ = ("commands", "emergencies", "events", "units")

    def __init__(self, outcome: Outcome) -> None:
        self.events = [e.model_dump_json() for e in outcome.events]
        self.emergencies = [e.model_dump_json() for e in outcome.emergencies]
        self.units = [u.model_dump_json() for u in outcome.units]
        self.commands = [encode(c).decode() for c in outcome.commands]


def encoded(outcome: Outcome) -> Encoded:
    cached = outcome.encoded
    if cached is None:
        cached = outcome.encoded = Encoded(outcome)
    return cast(Encoded, cached)  # decisions.Outcome cannot name Encoded (import cycle)


def _record_head(command_id: str) -> str:
    return '{"command_id":' + json.dumps(command_id) + ","


# the fingerprint sits right after the (at most 64-character) command id
FINGERPRINT_SCAN = 200
# Server-made fields that differ between two sends of the same command: the time, and the
# id the API makes up for a new report's emergency.
NOT_FINGERPRINTED = {"issued_at": True}
NOT_FINGERPRINTED_BY_KIND = {"report_emergency": {"issued_at": True, "emergency_id": True}}


def command_fingerprint(command: CommandBase) -> str:
    """A hash of what the command asks for (its canonical JSON without ``issued_at``)."""
    kind = getattr(command, "kind", "")
    data = command.model_dump(
        mode="json", exclude=NOT_FINGERPRINTED_BY_KIND.get(kind, NOT_FINGERPRINTED)
    )
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def reused_id_outcome(command: CommandBase, fingerprint: str) -> Outcome:
    """The refusal of a command sent under an id another command already used: it says
    nothing of that command. Its event id is its own (the first command's events hold
    ``<command_id>:<n>``), and the same stray command gets the same one."""
    event = CommandRejectedEvent(
        event_id=f"{command.command_id}:reused-{fingerprint[:16]}",
        command_id=command.command_id,
        region=command.region,
        command_kind=getattr(command, "kind", "command"),
        reason="command_id is already used by a different command; choose a new command_id",
    )
    return Outcome(events=[event])


def record_text(command_id: str, outcome: Outcome, fingerprint: str | None = None) -> str:
    enc = encoded(outcome)
    head = _record_head(command_id)
    if fingerprint is not None:
        head += f'"fingerprint":{json.dumps(fingerprint)},'
    # the saga's next commands (issue 15), only when there are any
    commands = f',"commands":[{",".join(enc.commands)}]' if enc.commands else ""
    if outcome.holds:
        commands += f',"holds":{json.dumps(_holds_json(outcome))}'
    return (
        f'{head}"events":[{",".join(enc.events)}],'
        f'"emergencies":[{",".join(enc.emergencies)}],"units":[{",".join(enc.units)}]'
        f"{commands}}}"
    )


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    """The outcome as plain JSON data (what a record holds, without its command id)."""
    enc = encoded(outcome)
    return {
        "events": [json.loads(t) for t in enc.events],
        "emergencies": [json.loads(t) for t in enc.emergencies],
        "units": [json.loads(t) for t in enc.units],
        **({"commands": [json.loads(t) for t in enc.commands]} if enc.commands else {}),
        **({"holds": _holds_json(outcome)} if outcome.holds else {}),
    }


def _holds_json(outcome: Outcome) -> dict[str, list[str] | None]:
    return {k: None if v is None else [v[0], v[1].isoformat()] for k, v in outcome.holds.items()}


def outcome_from_json(raw: Text | dict[str, Any]) -> Outcome:
    data = raw if isinstance(raw, dict) else json.loads(raw)
    events: list[Event] = [decode_event(e) for e in data["events"]]
    return Outcome(
        events=events,
        emergencies=[Emergency.model_validate(e) for e in data["emergencies"]],
        units=[Unit.model_validate(u) for u in data["units"]],
        commands=[decode_command(c) for c in data.get("commands", ())],
        holds={
            k: None if v is None else (v[0], datetime.fromisoformat(v[1]))
            for k, v in data.get("holds", {}).items()
        },
    )
