"""A small dispatch world in a region of its own, driven through the real worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas import (
    CancelEmergency,
    CompleteEmergency,
    DispatchEmergency,
    EmergencyType,
    RegisterUnit,
    ReportEmergency,
    SetUnitStatus,
    UnitPosition,
    UnitStatus,
    UnitType,
)
from schemas.events import Event
from tests.streams.helpers import Commands, EventLog

STATION = (60.1757576, 24.9421563)  # a road node in the north-west of the extract
FAR_STATION = (60.1660, 24.9500)  # south-east
INCIDENT = (60.1770, 24.9419)  # a few hundred metres from STATION


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def unit_u1(**fields: object) -> RegisterUnit:
    """Ambulance ``u1`` of region ``r`` at STATION: the unit of the pure-rule tests."""
    values: dict[str, object] = {
        "region": "r",
        "unit_id": "u1",
        "callsign": "U1",
        "type": UnitType.AMBULANCE,
        "lat": STATION[0],
        "lon": STATION[1],
    }
    return RegisterUnit(**{**values, **fields})  # type: ignore[arg-type]


def medical_report(**fields: object) -> ReportEmergency:
    """A priority-2 medical emergency of region ``r`` at INCIDENT (pure-rule tests)."""
    values: dict[str, object] = {
        "region": "r",
        "type": EmergencyType.MEDICAL,
        "priority": 2,
        "lat": INCIDENT[0],
        "lon": INCIDENT[1],
    }
    return ReportEmergency(**{**values, **fields})  # type: ignore[arg-type]


class World:
    """Every case gets its own region, so its units are the only candidates."""

    def __init__(self, commands: Commands, log: EventLog) -> None:
        self.commands = commands
        self.log = log
        self.region = new_id("case")

    def run(self, cmd: object) -> list[Event]:
        """Send ``cmd`` and return all its events: a sentinel command sent after it on the
        same partition proves every earlier event of the region is in the log."""
        sentinel = SetUnitStatus(
            command_id=new_id("sentinel"),
            region=self.region,
            unit_id="no-such-unit",
            status=UnitStatus.AVAILABLE,
        )
        self.commands.send(cmd, sentinel)
        self.log.wait_command(sentinel.command_id)
        return self.log.for_command(cmd.command_id)  # type: ignore[attr-defined]

    def register(
        self,
        at: tuple[float, float],
        unit_type: UnitType = UnitType.AMBULANCE,
        unit_id: str | None = None,
    ) -> str:
        unit_id = unit_id or new_id("unit")
        self.run(
            RegisterUnit(
                command_id=new_id("reg"),
                region=self.region,
                unit_id=unit_id,
                callsign=unit_id[-8:],
                type=unit_type,
                lat=at[0],
                lon=at[1],
            )
        )
        return unit_id

    def report(
        self, kind: EmergencyType = EmergencyType.MEDICAL, at: tuple[float, float] = INCIDENT
    ) -> str:
        cmd = medical_report(
            command_id=new_id("rep"), region=self.region, type=kind, lat=at[0], lon=at[1]
        )
        self.run(cmd)
        return cmd.emergency_id

    def dispatch(self, emergency_id: str, unit_id: str | None = None) -> DispatchEmergency:
        return DispatchEmergency(
            command_id=new_id("dsp"), region=self.region, emergency_id=emergency_id, unit_id=unit_id
        )

    def complete(self, emergency_id: str) -> CompleteEmergency:
        return CompleteEmergency(
            command_id=new_id("cmp"), region=self.region, emergency_id=emergency_id
        )

    def cancel(self, emergency_id: str) -> CancelEmergency:
        return CancelEmergency(
            command_id=new_id("cnc"),
            region=self.region,
            emergency_id=emergency_id,
            reason="caller hung up",
        )

    def set_status(self, unit_id: str, status: UnitStatus) -> SetUnitStatus:
        return SetUnitStatus(
            command_id=new_id("sts"), region=self.region, unit_id=unit_id, status=status
        )


def names(events: list[Event]) -> list[str]:
    out = []
    for e in events:
        action = getattr(e, "action", None)
        out.append(f"{e.event}:{action}" if action else e.event)
    return out


def fleet_backlog(
    prefix: str, units: int, fixes: int
) -> tuple[list[RegisterUnit], list[UnitPosition]]:
    """``units`` ambulances ``<prefix><n>`` at STATION and ``fixes`` GPS fixes spread over
    them, one millisecond apart from five minutes on (after the registrations' own times)."""
    registrations = [
        unit_u1(
            unit_id=f"{prefix}{n}", callsign=f"{prefix.upper()}{n}", command_id=f"reg-{prefix}{n}"
        )
        for n in range(units)
    ]
    start = datetime.now(UTC) + timedelta(minutes=5)
    positions = [
        UnitPosition(
            command_id=f"gps-{prefix}{n}",
            region="r",
            unit_id=f"{prefix}{n % units}",
            lat=round(STATION[0] + (n + 1) * 1e-6, 7),
            lon=STATION[1],
            issued_by="simulator",
            issued_at=start + timedelta(milliseconds=n),
        )
        for n in range(fixes)
    ]
    return registrations, positions
