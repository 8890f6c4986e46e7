"""Bodies of the HTTP commands, as clients send them (the API turns them into commands).

Types are strict: a number must be a JSON number and a string a JSON string (``"lat": true``
is refused, not read as 1.0). A report carries no ``region``: the server derives it from the
location (``schemas.geo``), so a client cannot file a report into a region of its choosing.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

from schemas.commands import Identifier
from schemas.entities import EmergencyType, Latitude, Longitude, Reporter, UnitStatus

StrictFloat = Annotated[float, Strict()]  # a JSON number (an integer too), never a bool
StrictInt = Annotated[int, Strict()]


class RequestBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: Identifier | None = Field(
        None, description="client-chosen id; sending the same id twice has one effect"
    )


class ReportRequest(RequestBody):
    type: EmergencyType
    priority: StrictInt = Field(3, ge=1, le=5, description="1 is the most urgent")
    lat: StrictFloat = Latitude
    lon: StrictFloat = Longitude
    description: str = Field("", max_length=2000)
    reporter: Reporter | None = None


class DispatchRequest(RequestBody):
    unit_id: Identifier | None = None


class CompleteRequest(RequestBody):
    pass


class CancelRequest(RequestBody):
    reason: str | None = Field(None, max_length=500)


class UnitStatusRequest(RequestBody):
    status: UnitStatus
