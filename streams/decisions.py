"""What a command does to current state: pure functions, no Kafka.

``decide(command, state, ...)`` returns an ``Outcome``: the events to publish and the new
state of every entity they change (each with its version one higher), or a single
``command_rejected`` with a reason a dispatcher can act on. The worker (``streams.processing``)
stores and publishes the outcome; it never decides anything itself, so every rule here is
testable without a broker.

Time comes in as ``now`` (the command record's timestamp), so replaying a command against
the same state yields the same events, byte for byte.

A unit's life: AVAILABLE -> DISPATCHED (dispatch) -> ON_SCENE (arrival) -> RETURNING (its
emergency completed or cancelled: it drives back to its station, moved by the same ticks)
-> AVAILABLE (at the station). A unit closer than ``AT_STATION_M`` to its station is
AVAILABLE at once. A RETURNING unit may be dispatched again, ranked by its road time from
where it is; a unit may also report itself AVAILABLE or OUT_OF_SERVICE on the way, which
ends the drive where it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from schemas import (
    FITTING_UNIT_TYPES,
    CancelEmergency,
    Candidate,
    Command,
    CommandRejectedEvent,
    CompleteEmergency,
    DispatchDecision,
    DispatchEmergency,
    Emergency,
    EmergencyCreated,
    EmergencyStatus,
    EmergencyUpdated,
    Event,
    RegisterUnit,
    ReportEmergency,
    SetUnitStatus,
    Unit,
    UnitLocation,
    UnitPosition,
    UnitStatus,
    UnitStatusUpdate,
    event_id_for,
)
from schemas.commands import ArchiveClosed
from schemas.events import EmergencyArchived
from schemas.geo import bearing_deg, haversine_m
from streams.movement import advance
from streams.routing import Router

MAX_CANDIDATES = 10
# A unit this close to its station needs no drive back: it is AVAILABLE at once.
AT_STATION_M = 30.0


class State(Protocol):
    def emergency(self, emergency_id: str) -> Emergency | None: ...
    def unit(self, unit_id: str) -> Unit | None: ...
    def units_in_region(self, region: str) -> list[Unit]: ...
    # the archive (issue 16): a region's closed emergencies still live, and when an
    # archived one left (a report must not bring it back)
    def closed_in_region(self, region: str) -> list[Emergency]: ...
    def archived_at(self, emergency_id: str) -> str | None: ...


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    emergencies: list[Emergency] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)
    # an archive sweep: archived ids remembered from before this time are forgotten
    forget_before: datetime | None = field(default=None, compare=False)
    # the JSON texts of the above, made once when first stored (``streams.state.encoded``)
    encoded: object = field(default=None, repr=False, compare=False)

    @property
    def rejected(self) -> bool:
        return len(self.events) == 1 and isinstance(self.events[0], CommandRejectedEvent)


class _Events:
    """Numbers the events of one command: ``event_id_for(command_id, n)``."""

    def __init__(self, command: Command, now: datetime) -> None:
        self.command = command
        self.now = now
        self.outcome = Outcome()

    def _base(self) -> dict:
        n = len(self.outcome.events)
        return {
            "event_id": event_id_for(self.command.command_id, n),
            "command_id": self.command.command_id,
            "region": self.command.region,
            "occurred_at": self.now,
        }

    def add(self, cls: type, **fields: object) -> Outcome:
        self.outcome.events.append(cls(**self._base(), **fields))
        return self.outcome

    def store(self, *entities: Emergency | Unit) -> None:
        for entity in entities:
            if isinstance(entity, Emergency):
                self.outcome.emergencies.append(entity)
            else:
                self.outcome.units.append(entity)

    def reject(
        self, reason: str, emergency_id: str | None = None, unit_id: str | None = None
    ) -> Outcome:
        return self.add(
            CommandRejectedEvent,
            command_kind=self.command.kind,
            reason=reason,
            emergency_id=emergency_id,
            unit_id=unit_id,
        )


def movement_command_id(unit_id: str, emergency_id: str | None, tick: int) -> str:
    """The id of the timer's move command: the same tick of the same trip is one command."""
    digest = hashlib.sha1(f"{unit_id}|{emergency_id}|{tick}".encode(), usedforsecurity=False)
    return f"mv-{digest.hexdigest()[:24]}"


def decide(
    command: Command, state: State, router: Router, now: datetime, tick_s: float = 1.0
) -> Outcome:
    """Apply ``command`` to ``state``; see the module docstring."""
    out = _Events(command, now)
    handler: Callable[..., Outcome] = _HANDLERS[type(command)]
    return handler(command, state, out, router=router, tick_s=tick_s)


def _bump(entity, now: datetime, **changes: object):
    if isinstance(entity, Unit):
        changes.setdefault("updated_at", now)
    return entity.model_copy(update={**changes, "version": entity.version + 1})


def report_emergency(cmd: ReportEmergency, state: State, out: _Events, **_: object) -> Outcome:
    if state.emergency(cmd.emergency_id) is not None:
        return out.reject(
            f"emergency {cmd.emergency_id} was already reported", emergency_id=cmd.emergency_id
        )
    if state.archived_at(cmd.emergency_id) is not None:
        return out.reject(
            f"emergency {cmd.emergency_id} was already reported, closed and archived",
            emergency_id=cmd.emergency_id,
        )
    emergency = Emergency(
        id=cmd.emergency_id,
        region=cmd.region,
        type=cmd.type,
        priority=cmd.priority,
        lat=cmd.lat,
        lon=cmd.lon,
        description=cmd.description,
        reporter=cmd.reporter,
        status=EmergencyStatus.PENDING,
        reported_at=out.now,
        version=1,
    )
    out.store(emergency)
    return out.add(EmergencyCreated, emergency=emergency)


def _unit_busy_reason(unit: Unit) -> str:
    if unit.status == UnitStatus.OUT_OF_SERVICE:
        return f"unit {unit.callsign} is out of service"
    return f"unit {unit.callsign} is {unit.status.value} to emergency {unit.emergency_id}"


def dispatch_emergency(
    cmd: DispatchEmergency, state: State, out: _Events, *, router: Router, **_: object
) -> Outcome:
    em = state.emergency(cmd.emergency_id)
    if em is None:
        return out.reject(
            f"no emergency {cmd.emergency_id} in region {cmd.region}", emergency_id=cmd.emergency_id
        )
    if em.status != EmergencyStatus.PENDING:
        who = f" (unit {em.assigned_unit_id})" if em.assigned_unit_id else ""
        return out.reject(
            f"emergency is {em.status.value}{who}; only a PENDING emergency can be dispatched",
            emergency_id=em.id,
        )
    fitting = FITTING_UNIT_TYPES[em.type]
    kinds = " or ".join(t.value.replace("_", " ") for t in fitting)
    if cmd.unit_id is not None:
        unit = state.unit(cmd.unit_id)
        if unit is None or unit.region != em.region:
            return out.reject(
                f"no unit {cmd.unit_id} in region {em.region}",
                emergency_id=em.id,
                unit_id=cmd.unit_id,
            )
        if unit.type not in fitting:
            return out.reject(
                f"unit {unit.callsign} is a {unit.type.value.replace('_', ' ')}; "
                f"a {em.type.value} emergency needs a {kinds}",
                emergency_id=em.id,
                unit_id=unit.id,
            )
        if not unit.status.dispatchable:
            return out.reject(_unit_busy_reason(unit), emergency_id=em.id, unit_id=unit.id)
    pool = [u for u in state.units_in_region(em.region) if u.type in fitting]
    available = sorted((u for u in pool if u.status.dispatchable), key=lambda u: u.id)
    if cmd.unit_id is not None and unit is not None and all(u.id != cmd.unit_id for u in available):
        available.append(unit)
    routes = router.routes_to((em.lat, em.lon), [(u.lat, u.lon) for u in available])
    ranked = sorted(
        ((r.duration_s, u.id, u, r) for u, r in zip(available, routes, strict=True) if r),
        key=lambda t: (t[0], t[1]),
    )
    if not ranked:
        busy = len(pool) - len(available)
        return out.reject(
            f"no available {kinds} in region {em.region} "
            f"({len(pool)} in the region, {busy} busy or out of service); "
            "the emergency stays PENDING",
            emergency_id=em.id,
        )
    if cmd.unit_id is not None:
        chosen = next((t for t in ranked if t[1] == cmd.unit_id), None)
        if chosen is None:
            return out.reject(
                f"no road route from unit {cmd.unit_id} to the emergency",
                emergency_id=em.id,
                unit_id=cmd.unit_id,
            )
    else:
        chosen = ranked[0]
    unit, route = chosen[2], chosen[3]
    candidates = [
        Candidate(unit_id=u.id, callsign=u.callsign, distance_m=r.distance_m, eta_s=r.duration_s)
        for _, _, u, r in ranked[:MAX_CANDIDATES]
    ]
    decision = DispatchDecision(
        chosen_unit_id=unit.id,
        overridden=cmd.unit_id is not None and ranked[0][1] != unit.id,
        distance_m=route.distance_m,
        eta_s=route.duration_s,
        candidates=candidates,
    )
    first, second = route.points[0], route.points[1]
    new_unit = _bump(
        unit,
        out.now,
        status=UnitStatus.DISPATCHED,
        emergency_id=em.id,
        route=route.points,
        route_index=0,
        eta_s=route.duration_s,
        heading=round(bearing_deg(*first, *second), 1),
    )
    new_em = _bump(
        em, out.now, status=EmergencyStatus.ASSIGNED, assigned_unit_id=unit.id, assigned_at=out.now
    )
    out.store(new_em, new_unit)
    out.add(EmergencyUpdated, action="assigned", emergency=new_em, unit=new_unit, dispatch=decision)
    return _unit_status(out, new_unit)


def _unit_status(out: _Events, unit: Unit) -> Outcome:
    return out.add(
        UnitStatusUpdate,
        unit_id=unit.id,
        status=unit.status,
        emergency_id=unit.emergency_id,
        unit=unit,
    )


def _release(unit: Unit, now: datetime, router: Router) -> Unit:
    """The unit after its emergency closed: RETURNING on a route to its station, or
    AVAILABLE where it is if it is at its station (or has none, or no road leads there)."""
    home_lat, home_lon = unit.home_lat, unit.home_lon
    if (
        home_lat is not None
        and home_lon is not None
        and haversine_m(unit.lat, unit.lon, home_lat, home_lon) > AT_STATION_M
    ):
        route = router.routes_to((home_lat, home_lon), [(unit.lat, unit.lon)])[0]
        if route is not None and len(route.points) >= 2 and route.duration_s > 0:
            first, second = route.points[0], route.points[1]
            return _bump(
                unit,
                now,
                status=UnitStatus.RETURNING,
                emergency_id=None,
                route=route.points,
                route_index=0,
                eta_s=route.duration_s,
                heading=round(bearing_deg(*first, *second), 1),
            )
    return _available(unit, now)


def _available(unit: Unit, now: datetime, status: UnitStatus = UnitStatus.AVAILABLE) -> Unit:
    return _bump(
        unit, now, status=status, emergency_id=None, route=None, route_index=None, eta_s=None
    )


def _close(
    cmd: CompleteEmergency | CancelEmergency,
    state: State,
    out: _Events,
    action: str,
    allowed: Sequence[EmergencyStatus],
    status: EmergencyStatus,
    router: Router,
) -> Outcome:
    em = state.emergency(cmd.emergency_id)
    if em is None:
        return out.reject(
            f"no emergency {cmd.emergency_id} in region {cmd.region}", emergency_id=cmd.emergency_id
        )
    if em.status not in allowed:
        hint = "; cancel it instead" if em.status == EmergencyStatus.PENDING else ""
        return out.reject(
            f"emergency is {em.status.value}; cannot mark it {status.value}{hint}",
            emergency_id=em.id,
        )
    new_em = _bump(em, out.now, status=status, closed_at=out.now)
    unit = state.unit(em.assigned_unit_id) if em.assigned_unit_id else None
    new_unit = _release(unit, out.now, router) if unit and unit.emergency_id == em.id else None
    out.store(new_em, *([new_unit] if new_unit else []))
    reason = getattr(cmd, "reason", None)
    out.add(EmergencyUpdated, action=action, emergency=new_em, unit=new_unit, reason=reason)
    return _unit_status(out, new_unit) if new_unit else out.outcome


def complete_emergency(
    cmd: CompleteEmergency, state: State, out: _Events, *, router: Router, **_: object
) -> Outcome:
    return _close(
        cmd,
        state,
        out,
        "completed",
        (EmergencyStatus.ASSIGNED, EmergencyStatus.ON_SCENE),
        EmergencyStatus.COMPLETED,
        router,
    )


def cancel_emergency(
    cmd: CancelEmergency, state: State, out: _Events, *, router: Router, **_: object
) -> Outcome:
    open_states = (EmergencyStatus.PENDING, EmergencyStatus.ASSIGNED, EmergencyStatus.ON_SCENE)
    return _close(cmd, state, out, "cancelled", open_states, EmergencyStatus.CANCELLED, router)


def _arrive(out: _Events, state: State, unit: Unit) -> Outcome:
    """The unit is at its emergency: both turn ON_SCENE."""
    new_unit = _bump(unit, out.now, status=UnitStatus.ON_SCENE, eta_s=0.0)
    em = state.emergency(unit.emergency_id) if unit.emergency_id else None
    out.store(new_unit)
    if em is not None and em.status == EmergencyStatus.ASSIGNED:
        new_em = _bump(em, out.now, status=EmergencyStatus.ON_SCENE, on_scene_at=out.now)
        out.store(new_em)
        out.add(EmergencyUpdated, action="on_scene", emergency=new_em, unit=new_unit)
    return _unit_status(out, new_unit)


def set_unit_status(cmd: SetUnitStatus, state: State, out: _Events, **_: object) -> Outcome:
    unit = state.unit(cmd.unit_id)
    if unit is None:
        return out.reject(f"no unit {cmd.unit_id} in region {cmd.region}", unit_id=cmd.unit_id)
    target = cmd.status
    if unit.status == target:
        return out.reject(f"unit {unit.callsign} is already {target.value}", unit_id=unit.id)
    if target == UnitStatus.ON_SCENE:
        if unit.status != UnitStatus.DISPATCHED:
            return out.reject(
                f"unit {unit.callsign} is {unit.status.value}; only a dispatched "
                "unit can report ON_SCENE",
                unit_id=unit.id,
            )
        return _arrive(out, state, unit)
    if target == UnitStatus.DISPATCHED:
        return out.reject("a unit is DISPATCHED by dispatching an emergency to it", unit_id=unit.id)
    if target == UnitStatus.RETURNING:
        return out.reject(
            "a unit is RETURNING when its emergency is completed or cancelled", unit_id=unit.id
        )
    if unit.emergency_id is not None:
        return out.reject(
            f"unit {unit.callsign} is assigned to emergency {unit.emergency_id}; "
            "complete or cancel that emergency first",
            unit_id=unit.id,
        )
    if unit.status == UnitStatus.RETURNING:
        new_unit = _available(unit, out.now, target)  # the drive back ends where it is
    else:
        new_unit = _bump(unit, out.now, status=target)
    out.store(new_unit)
    return _unit_status(out, new_unit)


def unit_position(
    cmd: UnitPosition, state: State, out: _Events, *, tick_s: float, **_: object
) -> Outcome:
    unit = state.unit(cmd.unit_id)
    if cmd.lat is not None and cmd.lon is not None:
        # A GPS fix from the unit itself, taken at ``cmd.issued_at`` (``out.now``, see
        # ``streams.processing``). It is idempotent without a record: applied only if newer
        # than the unit's state, which then carries the fix's time as ``updated_at``. The
        # same fix again (a redelivery, a retry) finds that state: its ``unit_location`` is
        # made again from it (same event id, same version), everything older is a no-op.
        if unit is None:
            return out.reject(f"no unit {cmd.unit_id} in region {cmd.region}", unit_id=cmd.unit_id)
        if unit.updated_at is not None and cmd.issued_at <= unit.updated_at:
            if cmd.issued_at == unit.updated_at and (unit.lat, unit.lon) == (cmd.lat, cmd.lon):
                return _location(out, unit)
            return out.outcome
        heading = bearing_deg(unit.lat, unit.lon, cmd.lat, cmd.lon)
        new_unit = _bump(unit, out.now, lat=cmd.lat, lon=cmd.lon, heading=round(heading, 1))
        out.store(new_unit)
        return _location(out, new_unit)
    # A timer tick only applies to the unit version it was computed from: a stale or
    # repeated tick is a no-op, so ticks from two timers or a replay never double-move.
    if unit is None or not unit.status.moving or unit.version != cmd.tick:
        return out.outcome
    step = advance(unit, tick_s)
    moved = _bump(
        unit,
        out.now,
        lat=step.lat,
        lon=step.lon,
        route_index=step.route_index,
        eta_s=step.eta_s,
        heading=step.heading,
    )
    out.store(moved)
    _location(out, moved)
    if not step.arrived:
        return out.outcome
    if unit.status == UnitStatus.RETURNING:
        return _at_station(out, moved)
    return _arrive(out, state, moved)


def _at_station(out: _Events, unit: Unit) -> Outcome:
    """A RETURNING unit reached its station: AVAILABLE there."""
    home = _available(unit, out.now)
    out.store(home)
    return _unit_status(out, home)


def _location(out: _Events, unit: Unit) -> Outcome:
    return out.add(
        UnitLocation,
        unit_id=unit.id,
        lat=unit.lat,
        lon=unit.lon,
        heading=unit.heading,
        eta_s=unit.eta_s,
        route_index=unit.route_index,
        version=unit.version,
    )


def register_unit(cmd: RegisterUnit, state: State, out: _Events, **_: object) -> Outcome:
    unit = state.unit(cmd.unit_id)
    if unit is None:
        new_unit = Unit(
            id=cmd.unit_id,
            callsign=cmd.callsign,
            type=cmd.type,
            region=cmd.region,
            status=UnitStatus.AVAILABLE,
            lat=cmd.lat,
            lon=cmd.lon,
            home_lat=cmd.lat,
            home_lon=cmd.lon,
            station=cmd.station,
            updated_at=out.now,
            version=1,
        )
    else:
        if unit.region != cmd.region:
            return out.reject(f"unit {unit.id} belongs to region {unit.region}", unit_id=unit.id)
        wanted = {
            "callsign": cmd.callsign,
            "type": cmd.type,
            "station": cmd.station,
            "home_lat": cmd.lat,
            "home_lon": cmd.lon,
        }
        changes = {k: v for k, v in wanted.items() if getattr(unit, k) != v}
        if not changes:
            # Nothing changes, but the sender still sees an outcome: the unit as it is
            # (same version, so every fold ignores it).
            return _unit_status(out, unit)
        if unit.status == UnitStatus.AVAILABLE:
            changes.update(lat=cmd.lat, lon=cmd.lon)
        new_unit = _bump(unit, out.now, **changes)
    out.store(new_unit)
    return _unit_status(out, new_unit)


def archive_command_id(region: str, at_ms: int) -> str:
    """The id of the timer's sweep command for ``region`` sent at ``at_ms`` (epoch ms)."""
    return f"sweep-{region}-{at_ms}"[:64]


def archive_closed(cmd: ArchiveClosed, state: State, out: _Events, **_: object) -> Outcome:
    """Archive the region's emergencies closed at least ``after_s`` before ``now`` (the
    record time): one ``emergency_archived`` each, oldest first. Nothing to archive is no
    outcome at all (no event, no record), like a stale tick."""
    cutoff = out.now - timedelta(seconds=cmd.after_s)
    due = [
        e
        for e in state.closed_in_region(cmd.region)
        if not e.status.is_open and e.closed_at is not None and e.closed_at <= cutoff
    ]
    for em in sorted(due, key=lambda e: (e.closed_at, e.id)):
        out.add(EmergencyArchived, emergency_id=em.id, status=em.status, closed_at=em.closed_at)
    if cmd.forget_after_s is not None:
        out.outcome.forget_before = out.now - timedelta(seconds=cmd.forget_after_s)
    return out.outcome


_HANDLERS: dict[type, Callable[..., Outcome]] = {
    ReportEmergency: report_emergency,
    DispatchEmergency: dispatch_emergency,
    CompleteEmergency: complete_emergency,
    CancelEmergency: cancel_emergency,
    SetUnitStatus: set_unit_status,
    UnitPosition: unit_position,
    RegisterUnit: register_unit,
    ArchiveClosed: archive_closed,
}
