"""The two entities of the domain, Emergency and Unit, and their vocabularies."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

Latitude = Field(ge=-90.0, le=90.0, description="WGS84 latitude in degrees")
Longitude = Field(ge=-180.0, le=180.0, description="WGS84 longitude in degrees")


class EmergencyType(StrEnum):
    MEDICAL = "medical"
    FIRE = "fire"
    POLICE = "police"
    TRAFFIC = "traffic"


class UnitType(StrEnum):
    AMBULANCE = "ambulance"
    FIRE_ENGINE = "fire_engine"
    POLICE_CAR = "police_car"


# Which unit types may answer which emergency, in order of preference.
FITTING_UNIT_TYPES: dict[EmergencyType, tuple[UnitType, ...]] = {
    EmergencyType.MEDICAL: (UnitType.AMBULANCE,),
    EmergencyType.FIRE: (UnitType.FIRE_ENGINE,),
    EmergencyType.POLICE: (UnitType.POLICE_CAR,),
    EmergencyType.TRAFFIC: (UnitType.POLICE_CAR, UnitType.AMBULANCE),
}


class EmergencyStatus(StrEnum):
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    ON_SCENE = "ON_SCENE"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"

    @property
    def is_open(self) -> bool:
        return self in (EmergencyStatus.PENDING, EmergencyStatus.ASSIGNED, EmergencyStatus.ON_SCENE)


class UnitStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    DISPATCHED = "DISPATCHED"
    ON_SCENE = "ON_SCENE"
    # Driving back to its station after its emergency closed. It may be dispatched again on
    # the way (ranked from where it is), as a real dispatcher would send a returning crew.
    RETURNING = "RETURNING"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"

    @property
    def dispatchable(self) -> bool:
        return self in (UnitStatus.AVAILABLE, UnitStatus.RETURNING)

    @property
    def moving(self) -> bool:
        """Driving a route, moved by the worker's movement ticks."""
        return self in (UnitStatus.DISPATCHED, UnitStatus.RETURNING)


class Entity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class Reporter(Entity):
    name: str | None = Field(None, max_length=120)
    phone: str | None = Field(None, max_length=40, pattern=r"^[0-9 +()\-]*$")


class Emergency(Entity):
    id: str = Field(min_length=1, max_length=64)
    region: str = Field(min_length=1, max_length=64)
    type: EmergencyType
    priority: int = Field(ge=1, le=5, description="1 is the most urgent")
    lat: float = Latitude
    lon: float = Longitude
    description: str = Field("", max_length=2000)
    reporter: Reporter | None = None
    status: EmergencyStatus = EmergencyStatus.PENDING
    assigned_unit_id: str | None = None
    reported_at: datetime
    assigned_at: datetime | None = None
    on_scene_at: datetime | None = None
    closed_at: datetime | None = None
    # Mutual aid (issue 15): the home region of the assigned unit when it came from another
    # region; that region's partition owns the unit, so closing the emergency asks it to
    # release the unit instead of writing the unit here.
    unit_region: str | None = None
    version: int = Field(1, ge=1)


class Unit(Entity):
    id: str = Field(min_length=1, max_length=64)
    callsign: str = Field(min_length=1, max_length=32)
    type: UnitType
    region: str = Field(min_length=1, max_length=64)
    status: UnitStatus = UnitStatus.AVAILABLE
    lat: float = Latitude
    lon: float = Longitude
    home_lat: float | None = None
    home_lon: float | None = None
    station: str | None = None
    emergency_id: str | None = None
    route: list[tuple[float, float]] | None = Field(
        None, description="polyline as [lat, lon] pairs while dispatched"
    )
    route_index: int | None = Field(None, description="how far along the route the unit is")
    eta_s: float | None = None
    heading: float | None = None
    updated_at: datetime | None = None
    # Mutual aid (issue 15): the region of the emergency this unit serves when that is not
    # its own region (the emergency is owned there).
    emergency_region: str | None = None
    version: int = Field(1, ge=1)
