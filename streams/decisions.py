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

Mutual aid (issue 15). Dispatch ranks fitting units of every region (``streams.ranking``;
other regions' units come from the read-only fleet view, ``State.fleet``). A unit of the
emergency's own region is assigned in one step, as before. A unit of another region is
written only by that region's partition, so taking it is a saga over the commands topic,
each step a command the worker emits in the *record* of the step before (re-sent on
redelivery with the same derived command id, ``saga_command_id``)::

    E: dispatch_emergency --reserve_unit--> R: the unit is still free? DISPATCHED to the
       emergency ("reserved" step) : refused (command_rejected with the reason)
    R --answer_reservation--> E: emergency still PENDING? ASSIGNED (the dispatch's outcome,
       under the dispatch's command id) : release_unit --> R (RETURNING, "released" step)
       refused? the next candidate (at most MAX_RESERVE_ATTEMPTS), else rejected

Every reservation is answered, and every answer either assigns or releases, so nothing is
orphaned and a unit is never on two emergencies: only its owner decides, one command at a
time. Closing an emergency served by another region's unit sends ``release_unit`` there;
its arrival (on its owner) sends ``unit_on_scene`` to the emergency's region.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

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
from schemas.commands import (
    AnswerReservation,
    ArchiveClosed,
    ReleaseUnit,
    ReserveUnit,
    UnitOnScene,
)
from schemas.events import EmergencyArchived
from schemas.geo import bearing_deg, haversine_m
from streams import ranking
from streams.movement import advance
from streams.ranking import DispatchPolicy
from streams.routing import Route, Router

MAX_CANDIDATES = 10
# A unit this close to its station needs no drive back: it is AVAILABLE at once.
AT_STATION_M = 30.0
# Units a mutual-aid dispatch tries to reserve before it gives up (each was taken meanwhile).
MAX_RESERVE_ATTEMPTS = 3
# While a reservation is out, the emergency is held for it: another dispatch of it is
# refused, until the answer comes or, if it never does, this long after the request.
HOLD_EXPIRY_S = 30.0


class State(Protocol):
    def emergency(self, emergency_id: str) -> Emergency | None: ...
    def unit(self, unit_id: str) -> Unit | None: ...
    def units_in_region(self, region: str) -> list[Unit]: ...
    # every unit of the city: this worker's own (authoritative) and the fleet view's
    def fleet(self, home: str | None = None) -> list[Unit]: ...
    # the saga holding an emergency while its reservation is out, and since when
    def hold(self, emergency_id: str) -> tuple[str, datetime] | None: ...
    @property
    def dispatch_policy(self) -> DispatchPolicy: ...
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
    # commands for other partitions (the mutual-aid saga's next steps), kept in the record
    commands: list[Command] = field(default_factory=list)
    # emergency id -> the saga now holding it (its id and since when), or None: released
    holds: dict[str, tuple[str, datetime] | None] = field(default_factory=dict)
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
        # a saga step answers for the command that started it (the API awaits that id)
        self.cause: tuple[str, str] | None = None

    def _base(self) -> dict:
        n = len(self.outcome.events)
        return {
            "event_id": event_id_for(self.command.command_id, n),
            "command_id": self.cause[0] if self.cause else self.command.command_id,
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

    def send(self, command: Command) -> None:
        self.outcome.commands.append(command)

    def reject(
        self, reason: str, emergency_id: str | None = None, unit_id: str | None = None
    ) -> Outcome:
        return self.add(
            CommandRejectedEvent,
            command_kind=self.cause[1] if self.cause else self.command.kind,
            reason=reason,
            emergency_id=emergency_id,
            unit_id=unit_id,
        )


def saga_command_id(parent: str, step: str) -> str:
    """The id of a saga command ``parent`` emits: the same step of the same parent is the
    same command, so a re-sent step is recognised by its owner's record."""
    digest = hashlib.sha1(f"{parent}|{step}".encode(), usedforsecurity=False)
    return f"ma-{digest.hexdigest()[:24]}"


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
        return _not_pending(out, em)
    held = state.hold(em.id)
    if held is not None and (out.now - held[1]).total_seconds() < HOLD_EXPIRY_S:
        return out.reject(
            f"a unit of another region is being reserved for this emergency (dispatch "
            f"{held[0]}); wait for its answer",
            emergency_id=em.id,
        )
    return _dispatch(out, state, router, em, cmd.command_id, cmd.unit_id)


def _not_pending(out: _Events, em: Emergency) -> Outcome:
    who = f" (unit {em.assigned_unit_id})" if em.assigned_unit_id else ""
    return out.reject(
        f"emergency is {em.status.value}{who}; only a PENDING emergency can be dispatched",
        emergency_id=em.id,
    )


def _dispatch(
    out: _Events,
    state: State,
    router: Router,
    em: Emergency,
    saga_id: str,
    override: str | None,
    tried: Sequence[str] = (),
    refusal: str | None = None,
) -> Outcome:
    """Rank the city's fitting units and assign the best (own region) or reserve it on its
    region (mutual aid). ``tried``: units whose reservation was refused in this saga."""
    fitting = FITTING_UNIT_TYPES[em.type]
    kinds = " or ".join(t.value.replace("_", " ") for t in fitting)
    policy = state.dispatch_policy
    city = em.region in policy.mutual_aid_regions
    serves = policy.area(em.region)
    if city:
        fleet = [u for u in state.fleet(home=em.region) if serves(u.region)]
    else:
        fleet = state.units_in_region(em.region)
    unit: Unit | None = None
    if override is not None:
        unit = next((u for u in fleet if u.id == override), None)
        if unit is None:
            return out.reject(
                f"no unit {override} in region {em.region}" + (" or any other" if city else ""),
                emergency_id=em.id,
                unit_id=override,
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
    pool = [u for u in fleet if u.type in fitting]
    available = sorted(
        (u for u in pool if u.status.dispatchable and u.id not in tried), key=lambda u: u.id
    )
    if unit is not None and all(u.id != unit.id for u in available):
        available.append(unit)
    search = router.search((em.lat, em.lon))
    ranked = ranking.Ranking(em, available, search, policy)
    if not ranked and not city:
        busy = len(pool) - len(available)
        return out.reject(
            f"no available {kinds} in region {em.region} "
            f"({len(pool)} in the region, {busy} busy or out of service); "
            "the emergency stays PENDING",
            emergency_id=em.id,
        )
    if not ranked:
        busy = len(pool) - len(available)
        regions = len({u.region for u in pool})
        taken = f"; the last reservation was refused: {refusal}" if refusal else ""
        return out.reject(
            f"no available {kinds} in any region ({len(pool)} in {regions} regions, "
            f"{busy} busy, out of service or taken meanwhile){taken}; "
            "the emergency stays PENDING",
            emergency_id=em.id,
        )
    if unit is not None and search.route((unit.lat, unit.lon)) is None:
        return out.reject(
            f"no road route from unit {override} to the emergency",
            emergency_id=em.id,
            unit_id=override,
        )
    choice = ranking.choose(em, ranked, fleet, policy, override)
    unit, route = choice.chosen.unit, choice.chosen.route
    candidates = [
        Candidate(
            unit_id=c.unit.id,
            callsign=c.unit.callsign,
            distance_m=c.route.distance_m,
            eta_s=c.route.duration_s,
            region=c.unit.region,
            cross_region=c.cross_region,
        )
        for c in ranked.first(MAX_CANDIDATES)
    ]
    explanation = choice.explanation
    if refusal:
        explanation += f"; tried first: {', '.join(tried)} ({refusal})"
    decision = DispatchDecision(
        chosen_unit_id=unit.id,
        overridden=override is not None and ranked.first(1)[0].unit.id != unit.id,
        distance_m=route.distance_m,
        eta_s=route.duration_s,
        candidates=candidates,
        explanation=explanation,
        leaves_uncovered=choice.leaves_uncovered,
    )
    if unit.region != em.region:
        out.outcome.holds[em.id] = (saga_id, out.now)
        out.send(
            ReserveUnit(
                command_id=saga_command_id(saga_id, f"reserve|{unit.id}|{len(tried)}"),
                region=unit.region,
                issued_by="worker",
                saga_id=saga_id,
                unit_id=unit.id,
                emergency_id=em.id,
                emergency_region=em.region,
                emergency_type=em.type,
                lat=em.lat,
                lon=em.lon,
                dispatch=decision.model_dump(mode="json"),
                tried=list(tried),
            )
        )
        return out.outcome  # the outcome comes with the answer (answer_reservation)
    new_unit = _on_route(unit, out.now, route, UnitStatus.DISPATCHED, emergency_id=em.id)
    new_em = _bump(
        em, out.now, status=EmergencyStatus.ASSIGNED, assigned_unit_id=unit.id, assigned_at=out.now
    )
    out.store(new_em, new_unit)
    out.add(EmergencyUpdated, action="assigned", emergency=new_em, unit=new_unit, dispatch=decision)
    return _unit_status(out, new_unit)


def reserve_unit(
    cmd: ReserveUnit, state: State, out: _Events, *, router: Router, **_: object
) -> Outcome:
    """On the unit's own partition: take it for another region's emergency, or refuse."""
    unit = state.unit(cmd.unit_id)
    reason: str | None = None
    route = None
    if unit is None or unit.region != cmd.region:
        reason = f"no unit {cmd.unit_id} in region {cmd.region}"
    elif not unit.status.dispatchable:
        reason = _unit_busy_reason(unit)
    elif unit.type not in FITTING_UNIT_TYPES[cmd.emergency_type]:
        reason = f"unit {unit.callsign} does not fit a {cmd.emergency_type.value} emergency"
    else:
        route = router.routes_to((cmd.lat, cmd.lon), [(unit.lat, unit.lon)])[0]
        if route is None or len(route.points) < 2:
            reason = f"no road route from unit {unit.callsign} to the emergency"
    answer = {
        "command_id": saga_command_id(cmd.command_id, "answer"),
        "region": cmd.emergency_region,
        "issued_by": "worker",
        "saga_id": cmd.saga_id,
        "unit_id": cmd.unit_id,
        "unit_region": cmd.region,
        "emergency_id": cmd.emergency_id,
        "dispatch": cmd.dispatch,
        "tried": cmd.tried,
    }
    if reason is not None or unit is None or route is None:
        reason = reason or "refused"
        out.send(AnswerReservation(**answer, reason=reason))
        return out.reject(
            f"mutual aid for {cmd.emergency_region} refused: {reason}",
            emergency_id=cmd.emergency_id,
            unit_id=cmd.unit_id,
        )
    new_unit = _on_route(
        unit,
        out.now,
        route,
        UnitStatus.DISPATCHED,
        emergency_id=cmd.emergency_id,
        emergency_region=cmd.emergency_region,
    )
    out.store(new_unit)
    out.send(AnswerReservation(**answer, unit=new_unit))
    return out.add(
        UnitStatusUpdate,
        unit_id=new_unit.id,
        status=new_unit.status,
        emergency_id=new_unit.emergency_id,
        unit=new_unit,
        mutual_aid="reserved",
        reason=f"mutual aid for {cmd.emergency_region} emergency {cmd.emergency_id}",
    )


def answer_reservation(
    cmd: AnswerReservation, state: State, out: _Events, *, router: Router, **_: object
) -> Outcome:
    """On the emergency's partition: assign the reserved unit, release it if the emergency
    no longer wants it, or try the next candidate after a refusal. Its events answer the
    dispatch command that started the saga."""
    out.cause = (cmd.saga_id, "dispatch_emergency")
    em = state.emergency(cmd.emergency_id)
    held = state.hold(cmd.emergency_id)
    if held is not None and held[0] == cmd.saga_id:
        out.outcome.holds[cmd.emergency_id] = None  # answered (a next try holds it again)
    decision = DispatchDecision.model_validate(cmd.dispatch)
    if cmd.unit is not None:
        if em is not None and em.status == EmergencyStatus.PENDING:
            new_em = _bump(
                em,
                out.now,
                status=EmergencyStatus.ASSIGNED,
                assigned_unit_id=cmd.unit_id,
                assigned_at=out.now,
                unit_region=cmd.unit_region,
            )
            out.store(new_em)  # the unit is its own region's to store
            return out.add(
                EmergencyUpdated,
                action="assigned",
                emergency=new_em,
                unit=cmd.unit,
                dispatch=decision,
            )
        why = f"emergency {cmd.emergency_id} is {em.status.value if em else 'gone'}"
        out.send(
            ReleaseUnit(
                command_id=saga_command_id(cmd.command_id, "release"),
                region=cmd.unit_region,
                issued_by="worker",
                unit_id=cmd.unit_id,
                emergency_id=cmd.emergency_id,
                reason=f"{why}; the reservation is released",
            )
        )
    if em is None:
        return out.reject(f"no emergency {cmd.emergency_id}", emergency_id=cmd.emergency_id)
    if em.status != EmergencyStatus.PENDING:
        return _not_pending(out, em)
    tried = [*cmd.tried, cmd.unit_id]
    if decision.overridden:
        return out.reject(
            f"unit {cmd.unit_id} could not be reserved: {cmd.reason}; the emergency stays PENDING",
            emergency_id=em.id,
            unit_id=cmd.unit_id,
        )
    if len(tried) >= MAX_RESERVE_ATTEMPTS:
        kinds = " or ".join(t.value.replace("_", " ") for t in FITTING_UNIT_TYPES[em.type])
        return out.reject(
            f"no available {kinds} could be reserved: {len(tried)} units were taken "
            f"meanwhile (last: {cmd.reason}); the emergency stays PENDING",
            emergency_id=em.id,
        )
    return _dispatch(out, state, router, em, cmd.saga_id, None, tried, cmd.reason)


def unit_on_scene(cmd: UnitOnScene, state: State, out: _Events, **_: object) -> Outcome:
    """On the emergency's partition: its unit from another region arrived."""
    em = state.emergency(cmd.emergency_id)
    if em is None or em.status != EmergencyStatus.ASSIGNED or em.assigned_unit_id != cmd.unit.id:
        return out.outcome  # closed or reassigned meanwhile, or already ON_SCENE
    new_em = _bump(em, out.now, status=EmergencyStatus.ON_SCENE, on_scene_at=out.now)
    out.store(new_em)
    return out.add(EmergencyUpdated, action="on_scene", emergency=new_em, unit=cmd.unit)


def release_unit(
    cmd: ReleaseUnit, state: State, out: _Events, *, router: Router, **_: object
) -> Outcome:
    """On the unit's partition: the emergency it served elsewhere let it go."""
    unit = state.unit(cmd.unit_id)
    if unit is None or unit.emergency_id != cmd.emergency_id:
        return out.outcome  # already released (or never reserved): nothing to do
    new_unit = _release(unit, out.now, router)
    out.store(new_unit)
    return out.add(
        UnitStatusUpdate,
        unit_id=new_unit.id,
        status=new_unit.status,
        emergency_id=None,
        unit=new_unit,
        mutual_aid="released",
        reason=cmd.reason,
    )


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
            return _on_route(
                unit, now, route, UnitStatus.RETURNING, emergency_id=None, emergency_region=None
            )
    return _available(unit, now)


def _on_route(unit: Unit, now: datetime, route: Route, status: UnitStatus, **changes: Any) -> Unit:
    """``unit`` setting off along ``route`` (dispatched or driving home), heading down its
    first leg."""
    first, second = route.points[0], route.points[1]
    return _bump(
        unit,
        now,
        status=status,
        route=route.points,
        route_index=0,
        eta_s=route.duration_s,
        heading=round(bearing_deg(*first, *second), 1),
        **changes,
    )


def _available(unit: Unit, now: datetime, status: UnitStatus = UnitStatus.AVAILABLE) -> Unit:
    return _bump(
        unit,
        now,
        status=status,
        emergency_id=None,
        emergency_region=None,
        route=None,
        route_index=None,
        eta_s=None,
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
    reason = getattr(cmd, "reason", None)
    if em.assigned_unit_id and em.unit_region and em.unit_region != em.region:
        # a unit of another region (mutual aid): its own region releases it
        out.store(new_em)
        out.send(
            ReleaseUnit(
                command_id=saga_command_id(cmd.command_id, "release"),
                region=em.unit_region,
                issued_by="worker",
                unit_id=em.assigned_unit_id,
                emergency_id=em.id,
                reason=f"{em.region} emergency {em.id} {action}",
            )
        )
        return out.add(EmergencyUpdated, action=action, emergency=new_em, reason=reason)
    unit = state.unit(em.assigned_unit_id) if em.assigned_unit_id else None
    new_unit = _release(unit, out.now, router) if unit and unit.emergency_id == em.id else None
    out.store(new_em, *([new_unit] if new_unit else []))
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
    out.store(new_unit)
    if unit.emergency_id and unit.emergency_region and unit.emergency_region != unit.region:
        # another region's emergency (mutual aid) is that region's to write
        out.send(
            UnitOnScene(
                command_id=saga_command_id(out.command.command_id, "on_scene"),
                region=unit.emergency_region,
                issued_by="worker",
                emergency_id=unit.emergency_id,
                unit=new_unit,
            )
        )
        return _unit_status(out, new_unit)
    em = state.emergency(unit.emergency_id) if unit.emergency_id else None
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
    ReserveUnit: reserve_unit,
    AnswerReservation: answer_reservation,
    ReleaseUnit: release_unit,
    UnitOnScene: unit_on_scene,
}
