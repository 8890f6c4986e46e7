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
    c:<command_id>     Record: the outcome a command produced (events + entity states),
                       the fingerprint of the command that produced it, and where and when
                       that command was read (``source``, ``at``; see "Records expire")
    h:<emergency_id>   [saga id, time]: a mutual-aid reservation is out for it (issue 15)
    m:<unit_id>        Record of the unit's latest movement tick (ticks are many; one
                       record per unit keeps the table from growing with time)
    m:sweep/<region>   Record of the region's latest archive sweep (one per region, like ticks)
    x:<region>         ids of the region's closed emergencies not archived yet (the sweep's
                       work list, so it needn't scan the table)
    a:<emergency_id>   archive time of an archived emergency: its ``e:`` entry is deleted
                       (a tombstone in the changelog), and this marker keeps a retried
                       report from bringing it back, until the sweep forgets it
    y:<region>:<day>   ids of the region's markers of that (UTC) day
    y:<region>         the oldest such day (the sweep forgets markers by whole days)

Values are JSON *text* (``str``; ``bytes`` once recovered from the changelog, whose value
serializer is ``raw``), encoded once by pydantic and never re-encoded by Faust: an entity's
text is the same string in its record, in its ``e:``/``u:`` entry and inside the event
that is published. A record embeds those texts as JSON (not as escaped strings)::

    {"command_id":"c-1","fingerprint":"9f..","source":[2,1041],"at":1735732800.0,
     "events":[{...},...],"emergencies":[...],...}

A command id is chosen by the client, so two clients can send different commands under one
id. The fingerprint (``command_fingerprint``) tells a true retry (same command, only
``issued_at`` differs) from such a collision, which is refused, not answered with the first
command's outcome.

Records expire. ``source`` is the (partition, offset) of the command message that made the
record, ``at`` its timestamp (seconds). ``streams.processing`` uses the source to tell a
crash replay (the same message again) from a client's retry (a later message), and an
``expire_records`` command removes the records of its partition stamped before its cutoff
(``expire_records``): deletes, so tombstones in the compacted changelog. Records written
before these fields existed are read as before (``record_stamp`` falls back to their first
event's time and region) and expire like the others.

Reads parse only what they need: a record check compares the prefix, a version check
reads the trailing ``"version":N`` (pydantic writes ``version`` last for both entities).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

from schemas import Emergency, Unit, UnitStatus, decode_command, decode_event, encode
from schemas.commands import ArchiveClosed, CommandBase, UnitPosition
from schemas.events import CommandRejectedEvent, EmergencyArchived, Event
from streams.decisions import Outcome
from streams.ranking import DispatchPolicy

# v2: values are raw JSON text (v1 was Faust-json-serialized dicts); a new name means a
# new changelog topic, so a v1 changelog is never read with the v2 format.
TABLE_NAME = "dispatch-state-v2"

Text = str | bytes


MOVING = (UnitStatus.DISPATCHED, UnitStatus.RETURNING)
# How a stored unit names those statuses (a top-level field: no nested object of a unit has
# a "status", and a string holding these characters would have its quotes escaped).
MOVING_TAGS = tuple(f'"status":"{status.value}"' for status in MOVING)


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
        self._units: dict[str, tuple[Any, Unit]] = {}  # unit id -> (stored text, parsed)

    # -- reads (the ``decisions.State`` protocol) ----------------------------------------
    def emergency(self, emergency_id: str) -> Emergency | None:
        raw = self.table.get(f"e:{emergency_id}")
        return Emergency.model_validate_json(raw) if raw is not None else None

    def unit(self, unit_id: str) -> Unit | None:
        raw = self.table.get(f"u:{unit_id}")
        return None if raw is None else self._parsed_unit(unit_id, raw)

    def _parsed_unit(self, unit_id: str, raw: Text) -> Unit:
        # a dispatch reads every unit of the city; most are as they were at the last one
        # (units are frozen models, so one parsed copy serves every read of the same text)
        known = self._units.get(unit_id)
        if known is not None and known[0] == raw:
            return known[1]
        unit = Unit.model_validate_json(raw)
        self._units[unit_id] = (raw, unit)
        return unit

    def _list(self, key: str) -> list[str]:
        raw = self.table.get(key)
        return json.loads(raw) if raw is not None else []

    def units_in_region(self, region: str) -> list[Unit]:
        units = (self.unit(uid) for uid in self._list(f"r:{region}"))
        return [u for u in units if u is not None]

    def fleet(self, home: str | None = None) -> list[Unit]:
        """Every unit of the city: this table's and the fleet view's, the newer version of
        each, except the units of region ``home`` (the emergency's), which come from the
        table alone. The table is the truth for its own partition at this point of it; the
        view may be ahead of it after a crash (the table lost writes that a replay is about
        to make again, maybe differently), and a home unit is assigned without a
        reservation, so a view copy there could give one unit version to two emergencies."""
        units = {u.id: u for region in self.regions() for u in self.units_in_region(region)}
        if self.fleet_view is not None:
            held = {unit_id: unit.version for unit_id, unit in units.items()}
            for unit in self.fleet_view.units(known=held):  # only those newer than held
                if unit.region != home:
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
        """The regions whose units this table may hold: the city's (the policy's list) and
        any other a unit registered in. The stored list is one key, written to the changelog
        partition of whichever command added a region, so a worker recovering several
        partitions keeps the copy it happened to apply last, which may lack regions: the
        city's regions must not depend on it (their units would stop moving)."""
        return sorted({*self._list("regions"), *self.dispatch_policy.mutual_aid_regions})

    def closed_in_region(self, region: str) -> list[Emergency]:
        """The region's closed emergencies that are still in the live state."""
        found = (self.emergency(eid) for eid in self._list(f"x:{region}"))
        return [e for e in found if e is not None]

    def archived_at(self, emergency_id: str) -> str | None:
        """When ``emergency_id`` was archived (ISO time), while it is remembered."""
        raw = self.table.get(f"a:{emergency_id}")
        return _text(raw) if raw is not None else None

    def sweep_regions(self, known: Iterable[str] = ()) -> list[str]:
        """Of ``known`` and the regions with units, those whose closed emergencies wait for
        a sweep here (a key lookup per region, not a scan of the table)."""
        return [r for r in sorted({*known, *self.regions()}) if self._list(f"x:{r}")]

    def moving_units(self) -> Iterator[Unit]:
        """The units the movement timer moves (DISPATCHED, RETURNING). Asked every tick, so
        a unit whose stored text does not name one of those statuses is not parsed: with a
        city's fleet patrolling, all 1,000 units' texts change every second."""
        for region in self.regions():
            for unit_id in self._list(f"r:{region}"):
                raw = self.table.get(f"u:{unit_id}")
                if raw is None or not any(tag in _text(raw) for tag in MOVING_TAGS):
                    continue
                unit = self._parsed_unit(unit_id, raw)
                if unit.status in MOVING:
                    yield unit

    # -- writes --------------------------------------------------------------------------
    def _put_if_newer(self, key: str, version: int, text: str) -> bool:
        current = self.table.get(key)
        if current is not None and stored_version(current) >= version:
            return False
        self.table[key] = text
        return True

    def put_emergency(self, emergency: Emergency, text: str | None = None) -> None:
        key = f"e:{emergency.id}"
        if key not in self.table and f"a:{emergency.id}" in self.table:
            return  # archived: a redelivered record must not bring it back (issue 16)
        self._put_if_newer(key, emergency.version, text or emergency.model_dump_json())
        # listed as closed even when not newer: a redelivered record finishes a list write
        # a crash cut off (as ``put_unit`` does), or the archive would never take it out
        if not emergency.status.is_open:
            closed = self._list(f"x:{emergency.region}")
            if emergency.id not in closed:
                self.table[f"x:{emergency.region}"] = json.dumps([*closed, emergency.id])

    def archive(self, events: list[EmergencyArchived]) -> None:
        """Take archived emergencies out of the table (each ``e:`` entry, and its ``h:``
        hold, is deleted, so a restarted worker does not recover it) and remember that
        they were archived. Each list entry is written once per call, not once per
        emergency."""
        gone = {e.emergency_id for e in events}
        for eid in gone:
            # its mutual-aid hold too: answered ("null") or not, it would stay forever
            for key in (f"e:{eid}", f"h:{eid}"):
                if self.table.get(key) is not None:
                    del self.table[key]
        for region in sorted({e.region for e in events}):
            closed = self._list(f"x:{region}")
            if any(c in gone for c in closed):
                self.table[f"x:{region}"] = json.dumps([c for c in closed if c not in gone])
        days: dict[tuple[str, str], list[str]] = {}
        for event in events:
            if f"a:{event.emergency_id}" in self.table:
                continue
            at = event.occurred_at.astimezone(UTC)
            self.table[f"a:{event.emergency_id}"] = at.isoformat(timespec="microseconds")
            days.setdefault((event.region, at.date().isoformat()), []).append(event.emergency_id)
        for (region, day), ids in sorted(days.items()):
            self.table[f"y:{region}:{day}"] = json.dumps([*self._list(f"y:{region}:{day}"), *ids])
            oldest = self.table.get(f"y:{region}")
            if oldest is None or day < _text(oldest):
                self.table[f"y:{region}"] = day

    def forget_archived(self, region: str, before: datetime) -> None:
        """Forget the region's archive markers of the days before ``before``'s (whole days:
        a marker is kept for the memory window and at most a day more)."""
        oldest = self.table.get(f"y:{region}")
        if oldest is None:
            return
        day, last = date.fromisoformat(_text(oldest)), before.astimezone(UTC).date()
        if day >= last:
            return
        while day < last:
            key = f"y:{region}:{day.isoformat()}"
            for eid in self._list(key):
                if f"a:{eid}" in self.table:
                    del self.table[f"a:{eid}"]
            if key in self.table:
                del self.table[key]
            day += timedelta(days=1)
        self.table[f"y:{region}"] = last.isoformat()

    def put_unit(self, unit: Unit, text: str | None = None) -> None:
        """Store ``unit`` if newer, and make sure its region lists it, newer or not: a crash
        can cut a command's writes after ``u:`` and before ``r:``, and the redelivered
        record, whose unit is then not newer, must still finish the list (or the region's
        dispatch would never see the unit again)."""
        self._put_unit_if_newer(unit, text or unit.model_dump_json())
        members = self._list(f"r:{unit.region}")
        if unit.id not in members:
            self.table[f"r:{unit.region}"] = json.dumps(sorted([*members, unit.id]))
            regions = self.regions()
            if unit.region not in regions:
                self.table["regions"] = json.dumps(sorted([*regions, unit.region]))

    def put_moved_unit(self, unit: Unit, text: str) -> None:
        """A unit that only moved (a GPS fix): its region, and so ``r:``, is unchanged."""
        self._put_unit_if_newer(unit, text)

    def _put_unit_if_newer(self, unit: Unit, text: str) -> None:
        if self._put_if_newer(f"u:{unit.id}", unit.version, text):
            self._units[unit.id] = (text, unit)

    def apply(self, outcome: Outcome) -> None:
        """Store the entity states of an outcome; older versions never overwrite newer."""
        enc = encoded(outcome)
        for emergency, text in zip(outcome.emergencies, enc.emergencies, strict=True):
            self.put_emergency(emergency, text)
        for unit, text in zip(outcome.units, enc.units, strict=True):
            self.put_unit(unit, text)
        archived = [e for e in outcome.events if isinstance(e, EmergencyArchived)]
        if archived:
            self.archive(archived)
            if outcome.forget_before is not None:
                for region in sorted({e.region for e in archived}):
                    self.forget_archived(region, outcome.forget_before)
        for emergency_id, hold in outcome.holds.items():
            key = f"h:{emergency_id}"
            if hold is not None:
                self.table[key] = json.dumps([hold[0], hold[1].isoformat()])
            elif key in self.table:
                self.table[key] = "null"  # no delete: writes reach the changelog as sets only

    # -- records of processed commands ---------------------------------------------------
    @staticmethod
    def record_key(command: CommandBase) -> str:
        """Where ``command``'s record is kept: ``c:<command_id>``, or, for the commands the
        next one of their subject supersedes, one slot per subject, overwritten, so they do
        not add a record each: a unit's movement tick (``m:<unit_id>``) and a region's
        archive sweep (``m:sweep/<region>``, issue 16)."""
        if isinstance(command, UnitPosition) and command.lat is None:
            return f"m:{command.unit_id}"
        if isinstance(command, ArchiveClosed):
            return f"m:sweep/{command.region}"
        return f"c:{command.command_id}"

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
        self,
        key: str,
        command_id: str,
        outcome: Outcome,
        fingerprint: str | None = None,
        source: tuple[int, int] | None = None,
        at: float | None = None,
    ) -> None:
        self.table[key] = record_text(command_id, outcome, fingerprint, source, at)

    def recorded_source(self, key: str) -> tuple[int, int] | None:
        """The (partition, offset) of the message that made the record at ``key``."""
        raw = self.table.get(key)
        return _head(raw).source if raw is not None else None

    def expire_records(
        self, partition: int, cutoff: float, partition_of: Callable[[str], int]
    ) -> int:
        """Delete the command records (``c:`` keys) of ``partition`` stamped before
        ``cutoff`` (seconds); returns how many. ``partition_of`` places a record that does
        not name its source (written before ``source`` existed) by its region. Movement
        records (``m:``, one per unit) are overwritten, not expired."""
        expired = []
        for key, raw in list(self.table.items()):
            if not key.startswith("c:"):
                continue
            stamp = record_stamp(raw, partition_of)
            if stamp is not None and stamp[0] == partition and stamp[1] < cutoff:
                expired.append(key)
        for key in expired:
            del self.table[key]
        return len(expired)

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
    def units(self, known: Mapping[str, int] | None = None) -> Iterable[Unit]:
        """Every unit's latest state, except those ``known`` (id -> version) holds at the
        same or a newer version."""
        ...


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


def record_text(
    command_id: str,
    outcome: Outcome,
    fingerprint: str | None = None,
    source: tuple[int, int] | None = None,
    at: float | None = None,
) -> str:
    enc = encoded(outcome)
    head = _record_head(command_id)
    if fingerprint is not None:
        head += f'"fingerprint":{json.dumps(fingerprint)},'
    if source is not None:
        head += f'"source":[{int(source[0])},{int(source[1])}],'
    if at is not None:
        head += f'"at":{float(at)!r},'
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


class _Head(NamedTuple):
    source: tuple[int, int] | None
    at: float | None


# the head (everything before "events") of a record with a 64-character command id
HEAD_SCAN = 300


def _head(raw: Text) -> _Head:
    """A record's ``source`` and ``at`` from its head alone (None for an older record)."""
    text = _text(raw)[:HEAD_SCAN]
    end = text.find(',"events":')
    if end < 0:
        return _Head(None, None)
    try:
        data = json.loads(text[:end] + "}")
    except ValueError:  # a head this version does not know: read as an older record
        return _Head(None, None)
    source = data.get("source")
    at = data.get("at")
    return _Head(
        (int(source[0]), int(source[1])) if source is not None else None,
        float(at) if at is not None else None,
    )


def record_stamp(raw: Text, partition_of: Callable[[str], int]) -> tuple[int, float] | None:
    """(partition, time in seconds) of a record; for a record older than those fields, the
    partition of its first event's region and that event's time. None if it has no event."""
    head = _head(raw)
    if head.source is not None and head.at is not None:
        return head.source[0], head.at
    events = json.loads(raw).get("events") or []
    if not events:
        return None
    first = decode_event(events[0])
    partition = head.source[0] if head.source is not None else partition_of(first.region)
    at = head.at if head.at is not None else first.occurred_at.timestamp()
    return partition, at
