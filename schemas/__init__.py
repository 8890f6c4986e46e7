"""Command and event types, one JSON encoding, exported JSON Schemas.

Imports nothing of ours: every other package depends on this one, never the reverse.
"""

from schemas.codec import SchemaError, decode_command, decode_event, encode, parse
from schemas.commands import (
    CancelEmergency,
    Command,
    CompleteEmergency,
    DispatchEmergency,
    RegisterUnit,
    ReportEmergency,
    SetUnitStatus,
    UnitPosition,
)
from schemas.entities import (
    FITTING_UNIT_TYPES,
    Emergency,
    EmergencyStatus,
    EmergencyType,
    Reporter,
    Unit,
    UnitStatus,
    UnitType,
)
from schemas.events import (
    Candidate,
    CommandRejectedEvent,
    DispatchDecision,
    EmergencyCreated,
    EmergencyUpdated,
    Event,
    UnitLocation,
    UnitStatusUpdate,
    event_id_for,
)

__all__ = [
    "FITTING_UNIT_TYPES",
    "CancelEmergency",
    "Candidate",
    "Command",
    "CommandRejectedEvent",
    "CompleteEmergency",
    "DispatchDecision",
    "DispatchEmergency",
    "Emergency",
    "EmergencyCreated",
    "EmergencyStatus",
    "EmergencyType",
    "EmergencyUpdated",
    "Event",
    "RegisterUnit",
    "ReportEmergency",
    "Reporter",
    "SchemaError",
    "SetUnitStatus",
    "Unit",
    "UnitLocation",
    "UnitPosition",
    "UnitStatus",
    "UnitStatusUpdate",
    "UnitType",
    "decode_command",
    "decode_event",
    "encode",
    "event_id_for",
    "parse",
]
