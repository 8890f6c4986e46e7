"""Events: facts published to ``dispatch.events`` by the worker, keyed by region.

Each event carries the full new state of every entity it changes (with its ``version``),
the ``command_id`` that caused it and a deterministic ``event_id``
(``<command_id>:<n>``, n counting the events of that command), so consumers are
idempotent by ``event_id`` and by entity ``version``.

``live_data()`` gives the payload of the live message of the same name (SSE ``data:``,
WebSocket ``data``), in the shapes of DESIGN.md plus the ``event_id``: a message's ``id`` is
a log position, which differs between copies of an event the worker re-published after a
crash or a retry, so the event id is what lets a client drop such a copy itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.commands import SCHEMA_VERSION, utcnow
from schemas.entities import Emergency, EmergencyStatus, Unit, UnitStatus


def event_id_for(command_id: str, n: int) -> str:
    return f"{command_id}:{n}"


class Candidate(BaseModel):
    """One unit that was considered for a dispatch, and why it ranked where it did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit_id: str
    callsign: str
    distance_m: float
    eta_s: float
    # Mutual aid (issue 15): the unit's home region, and whether it is another region's
    region: str | None = None
    cross_region: bool = False


class DispatchDecision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    chosen_unit_id: str
    overridden: bool = False
    distance_m: float
    eta_s: float
    candidates: list[Candidate] = Field(default_factory=list)
    # Why the chosen unit won, in a dispatcher's words (issue 15): ETA, home-region
    # preference, coverage ("leaves hki-ne without an ambulance"), override.
    explanation: str | None = None
    # the region left without a unit of the chosen unit's type, if any
    leaves_uncovered: str | None = None


class EventBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    event_id: str
    command_id: str
    region: str
    occurred_at: datetime = Field(default_factory=utcnow)
    # whether the event is a live message (SSE, WebSocket, replay); ``CommandRepeated`` is not
    live: ClassVar[bool] = True

    def live_data(self) -> dict[str, Any]:
        raise NotImplementedError

    def _live(self, fields: set[str]) -> dict[str, Any]:
        return self.model_dump(mode="json", include={"event_id", *fields})


class EmergencyCreated(EventBase):
    event: Literal["emergency_created"] = "emergency_created"
    emergency: Emergency

    def live_data(self) -> dict[str, Any]:
        return {**self.emergency.model_dump(mode="json"), "event_id": self.event_id}


class EmergencyUpdated(EventBase):
    event: Literal["emergency_updated"] = "emergency_updated"
    action: Literal["assigned", "on_scene", "completed", "cancelled"]
    emergency: Emergency
    unit: Unit | None = None
    dispatch: DispatchDecision | None = None
    reason: str | None = None

    def live_data(self) -> dict[str, Any]:
        return self._live({"action", "emergency", "unit", "dispatch", "reason"})


class UnitStatusUpdate(EventBase):
    event: Literal["unit_status_update"] = "unit_status_update"
    unit_id: str
    status: UnitStatus
    emergency_id: str | None = None
    unit: Unit
    # Mutual aid (issue 15): the saga step this update is ("reserved" for another region's
    # emergency, "released" back by it) and why.
    mutual_aid: Literal["reserved", "released"] | None = None
    reason: str | None = None

    def live_data(self) -> dict[str, Any]:
        # DESIGN.md's shape; a mutual-aid step adds its name and reason
        extra = {"mutual_aid", "reason"} if self.mutual_aid is not None else set()
        return self._live({"unit_id", "status", "emergency_id", "unit", *extra})


class UnitLocation(EventBase):
    event: Literal["unit_location"] = "unit_location"
    unit_id: str
    lat: float
    lon: float
    heading: float | None = None
    eta_s: float | None = None
    route_index: int | None = None
    version: int = Field(ge=1, description="the unit's version after this move")

    def live_data(self) -> dict[str, Any]:
        return self._live({"unit_id", "lat", "lon", "heading", "eta_s", "route_index", "version"})


class CommandRejectedEvent(EventBase):
    event: Literal["command_rejected"] = "command_rejected"
    command_kind: str
    reason: str
    emergency_id: str | None = None
    unit_id: str | None = None

    def live_data(self) -> dict[str, Any]:
        return self._live({"command_id", "command_kind", "reason", "emergency_id", "unit_id"})


class CommandRepeated(EventBase):
    """A command id the worker had already answered arrived again in a new message (a
    client's retry): nothing was applied and its events were not published again.
    ``event_ids`` name the recorded outcome's events, so the API answers the retry with
    them (``api.outcomes``). Not a live message: dashboards already have those events.
    Its own id, ``<command_id>:repeated-<offset>``, is the same for every copy of the one
    retry message and different for each retry."""

    event: Literal["command_repeated"] = "command_repeated"
    command_kind: str
    event_ids: list[str]
    live: ClassVar[bool] = False

    def live_data(self) -> dict[str, Any]:
        return self._live({"command_id", "command_kind", "event_ids"})


class EmergencyArchived(EventBase):
    """A closed emergency left the live state (issue 16) at ``occurred_at``: readers drop it
    from current state; the log, DuckDB and replay keep its history."""

    event: Literal["emergency_archived"] = "emergency_archived"
    emergency_id: str
    status: EmergencyStatus
    closed_at: datetime | None = None

    def live_data(self) -> dict[str, Any]:
        return {
            **self._live({"emergency_id", "status", "closed_at"}),
            "archived_at": self.model_dump(mode="json", include={"occurred_at"})["occurred_at"],
        }


Event = Annotated[
    EmergencyCreated
    | EmergencyUpdated
    | UnitStatusUpdate
    | UnitLocation
    | CommandRejectedEvent
    | CommandRepeated
    | EmergencyArchived,
    Field(discriminator="event"),
]
# the live messages' names; ``command_repeated`` is in the log only (``EventBase.live``)
EVENT_NAMES = (
    "emergency_created",
    "emergency_updated",
    "unit_status_update",
    "unit_location",
    "command_rejected",
    "emergency_archived",
)
