"""Bodies of the HTTP commands, as clients send them (the API turns them into commands)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.commands import Identifier
from schemas.entities import EmergencyType, Latitude, Longitude, Reporter, UnitStatus


class RequestBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: Identifier | None = Field(
        None, description="client-chosen id; sending the same id twice has one effect"
    )


class ReportRequest(RequestBody):
    type: EmergencyType
    priority: int = Field(3, ge=1, le=5, description="1 is the most urgent")
    lat: float = Latitude
    lon: float = Longitude
    description: str = Field("", max_length=2000)
    reporter: Reporter | None = None
    region: Identifier | None = Field(None, description="derived from the location if omitted")


class DispatchRequest(RequestBody):
    unit_id: Identifier | None = None


class CompleteRequest(RequestBody):
    pass


class CancelRequest(RequestBody):
    reason: str | None = Field(None, max_length=500)


class UnitStatusRequest(RequestBody):
    status: UnitStatus
