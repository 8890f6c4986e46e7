"""Commands: intents sent to ``dispatch.commands``, keyed by region.

Only the Faust worker turns a command into events. Every command carries a
``command_id`` (client-chosen or generated) that makes delivering it twice harmless.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.entities import (
    EmergencyType,
    Latitude,
    Longitude,
    Reporter,
    Unit,
    UnitStatus,
    UnitType,
)

SCHEMA_VERSION: Final = 1
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def new_id() -> str:
    return uuid.uuid4().hex


EMERGENCY_ID_NAMESPACE = b"dispatchwire/emergency/"


def emergency_id_for(command_id: str) -> str:
    """The id of the emergency a report creates: derived from its command id, so every copy
    of a retried report (which the worker de-duplicates by command id, keeping the first)
    names the same emergency. 32 hex digits like ``new_id()``, and as unguessable as the
    command id: a server-generated command id is random."""
    return hashlib.sha256(EMERGENCY_ID_NAMESPACE + command_id.encode()).hexdigest()[:32]


def utcnow() -> datetime:
    return datetime.now(UTC)


class CommandBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    command_id: Identifier = Field(default_factory=new_id)
    region: Identifier
    issued_at: datetime = Field(default_factory=utcnow)
    issued_by: str | None = Field(None, max_length=64, description="role that sent it")


class ReportEmergency(CommandBase):
    kind: Literal["report_emergency"] = "report_emergency"
    emergency_id: Identifier = Field(
        default_factory=lambda data: emergency_id_for(data["command_id"]),
        description="defaults to a hash of the command id (the same for every retry)",
    )
    type: EmergencyType
    priority: int = Field(ge=1, le=5)
    lat: float = Latitude
    lon: float = Longitude
    description: str = Field("", max_length=2000)
    reporter: Reporter | None = None


class DispatchEmergency(CommandBase):
    kind: Literal["dispatch_emergency"] = "dispatch_emergency"
    emergency_id: Identifier
    unit_id: Identifier | None = Field(None, description="override the recommended unit")


class CompleteEmergency(CommandBase):
    kind: Literal["complete_emergency"] = "complete_emergency"
    emergency_id: Identifier


class CancelEmergency(CommandBase):
    kind: Literal["cancel_emergency"] = "cancel_emergency"
    emergency_id: Identifier
    reason: str | None = Field(None, max_length=500)


class SetUnitStatus(CommandBase):
    kind: Literal["set_unit_status"] = "set_unit_status"
    unit_id: Identifier
    status: UnitStatus


class UnitPosition(CommandBase):
    """Advance a dispatched unit along its route (sent by the worker's movement timer),
    or report a unit's own GPS fix when ``lat``/``lon`` are given."""

    kind: Literal["unit_position"] = "unit_position"
    unit_id: Identifier
    tick: int = Field(0, ge=0, description="movement step; makes timer commands idempotent")
    lat: float | None = Field(None, ge=-90.0, le=90.0)
    lon: float | None = Field(None, ge=-180.0, le=180.0)


class RegisterUnit(CommandBase):
    """Create or re-home a unit (used by ``dispatchwire seed``); idempotent by unit id."""

    kind: Literal["register_unit"] = "register_unit"
    unit_id: Identifier
    callsign: str = Field(min_length=1, max_length=32)
    type: UnitType
    lat: float = Latitude
    lon: float = Longitude
    station: str | None = Field(None, max_length=64)


class ExpireRecords(CommandBase):
    """Forget the command records of this command's partition stamped before ``cutoff``
    (sent by the worker's sweep timer, ``Settings.command_record_window_s``): a command id
    is remembered, and a retry of it answered from its record, for that window."""

    kind: Literal["expire_records"] = "expire_records"
    cutoff: datetime


class ArchiveClosed(CommandBase):
    """Sweep a region's closed emergencies out of the live state (sent by the worker's
    timer, issue 16): every COMPLETED or CANCELLED emergency closed at least ``after_s``
    before this command's record time is archived (``emergency_archived``). The cutoff comes
    from the record time, not the sender's clock, so a replayed sweep decides the same."""

    kind: Literal["archive_closed"] = "archive_closed"
    after_s: float = Field(gt=0, description="archive what closed this long before the sweep")
    forget_after_s: float | None = Field(
        None, gt=0, description="forget archived ids this long after their archive"
    )


# --- mutual aid (issue 15): the cross-region dispatch saga, sent by the worker only -------
# A unit's state is written only by the partition of its own region; an emergency's only by
# its region's. ``streams.mutualaid`` tells the saga; every step is idempotent by command id.


class ReserveUnit(CommandBase):
    """To the unit's region: take the unit for another region's emergency if it is still
    free (then it drives there at once), else refuse. Always answered (``AnswerReservation``)."""

    kind: Literal["reserve_unit"] = "reserve_unit"
    saga_id: Identifier = Field(description="the dispatch command that started the saga")
    unit_id: Identifier
    emergency_id: Identifier
    emergency_region: Identifier
    emergency_type: EmergencyType
    lat: float = Latitude
    lon: float = Longitude
    dispatch: dict[str, Any] = Field(description="the DispatchDecision, handed back in answer")
    tried: list[Identifier] = Field(default_factory=list, max_length=16)


class AnswerReservation(CommandBase):
    """To the emergency's region: the unit is reserved (``unit`` is its new state) or
    refused (``reason``). The emergency's region assigns it, or releases it if the emergency
    no longer wants it, or tries the next candidate."""

    kind: Literal["answer_reservation"] = "answer_reservation"
    saga_id: Identifier
    unit_id: Identifier
    unit_region: Identifier
    emergency_id: Identifier
    unit: Unit | None = None
    reason: str | None = Field(None, max_length=500)
    dispatch: dict[str, Any]
    tried: list[Identifier] = Field(default_factory=list, max_length=16)


class ReleaseUnit(CommandBase):
    """To the unit's region: the emergency it serves no longer needs it (closed, or it was
    reserved for an emergency that got another unit)."""

    kind: Literal["release_unit"] = "release_unit"
    unit_id: Identifier
    emergency_id: Identifier
    reason: str = Field(max_length=500)


class UnitOnScene(CommandBase):
    """To the emergency's region: another region's unit serving it arrived (its owner moved
    it there), so the emergency turns ON_SCENE where it is owned."""

    kind: Literal["unit_on_scene"] = "unit_on_scene"
    emergency_id: Identifier
    unit: Unit


Command = Annotated[
    ReportEmergency
    | DispatchEmergency
    | CompleteEmergency
    | CancelEmergency
    | SetUnitStatus
    | UnitPosition
    | RegisterUnit
    | ExpireRecords
    | ArchiveClosed
    | ReserveUnit
    | AnswerReservation
    | ReleaseUnit
    | UnitOnScene,
    Field(discriminator="kind"),
]
