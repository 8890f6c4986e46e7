"""The live feed's vocabulary shared by the server and the pages: WebSocket close codes,
and the words of the domain the pages read and draw (``vocabulary_json``).

A browser sees a refused WebSocket handshake only as close code 1006, with no status and no
reason, so every refusal the page must act on is sent *after* accepting, as one of these
application codes (4000-4999 are free for applications; the last three digits echo the HTTP
status with the same meaning). The page reads this table (served by the views), never its
own copy: ``action`` says what it does on that close.

- ``reconnect``: resume with the last id it saw, after the usual back-off;
- ``login``: ask for a token, then reconnect;
- ``backoff``: reconnect later (the server is busy or not ready yet);
- ``stop``: the request itself is wrong; reconnecting the same way cannot help.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from schemas.entities import (
    FITTING_UNIT_TYPES,
    EmergencyStatus,
    EmergencyType,
    UnitStatus,
    UnitType,
)
from schemas.events import EVENT_NAMES

# The conflated unit positions (api/conflate.py): not an event of the log but a message of
# the live feed, each unit's latest position since the last frame; its id is still a log
# position (the one after its last position). Columnar: the field names once, then one
# array per unit, ``{"fields": ["unit_id", "lat", ...], "rows": [["u-1", 60.1699123, ...],
# ...]}``; a row's values are the ``unit_location`` data's, unrounded (null where it has
# none). A unit costs ~57 bytes as a row where it cost ~121 as an object (more than half
# of it key names; tests/api/test_compact_position_frames.py), and the frames, 4 a second
# to each of 1,000 dashboards, are most of the API's bytes (README, "A city's fleet").
UNIT_LOCATIONS = "unit_locations"
FRAME_EVENTS = (UNIT_LOCATIONS,)
POSITION_FIELDS = ("unit_id", "lat", "lon", "heading", "eta_s", "route_index", "version")


def position_row(data: Mapping[str, Any]) -> list[Any]:
    """A ``unit_location``'s live data as its frame row (``POSITION_FIELDS`` in order)."""
    return [data.get(name) for name in POSITION_FIELDS]


def frame_positions(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A ``unit_locations`` frame's data (parsed JSON) as one dict per unit, the shape of a
    ``unit_location``'s data without its ``event_id``: what a Python client reads."""
    fields = data["fields"]
    return [dict(zip(fields, row, strict=True)) for row in data["rows"]]


CloseAction = Literal["reconnect", "login", "backoff", "stop"]


class CloseCode(NamedTuple):
    code: int
    name: str
    action: CloseAction
    reason: str


GOING_AWAY = CloseCode(1001, "going_away", "reconnect", "server shutting down")
BAD_REQUEST = CloseCode(4400, "bad_request", "stop", "malformed first frame or filter")
UNAUTHORIZED = CloseCode(4401, "unauthorized", "login", "missing or unknown token")
FORBIDDEN = CloseCode(4403, "forbidden", "login", "this token's role cannot read the feed")
TOO_SLOW = CloseCode(4408, "too_slow", "reconnect", "client too slow")
TOO_MANY = CloseCode(4429, "too_many_connections", "backoff", "too many connections")
NOT_READY = CloseCode(4503, "not_ready", "backoff", "the live feed is not ready yet")

CLOSE_CODES: tuple[CloseCode, ...] = (
    GOING_AWAY,
    BAD_REQUEST,
    UNAUTHORIZED,
    FORBIDDEN,
    TOO_SLOW,
    TOO_MANY,
    NOT_READY,
)


def close_codes_json() -> dict[str, dict[str, str]]:
    """``{code: {"name", "action", "reason"}}``, what the pages load."""
    return {
        str(c.code): {"name": c.name, "action": c.action, "reason": c.reason} for c in CLOSE_CODES
    }


def vocabulary_json() -> dict[str, Any]:
    """The domain's words as the pages load them (``/views/config.js``), from the types
    that define them: types, statuses and the groups of statuses the pages act on, which
    unit types fit which emergency, the event names of the log and of the live feed's
    frames."""
    return {
        "emergencyTypes": [t.value for t in EmergencyType],
        "unitTypes": [t.value for t in UnitType],
        "fittingUnitTypes": {
            e.value: [u.value for u in units] for e, units in FITTING_UNIT_TYPES.items()
        },
        "emergencyStatuses": [s.value for s in EmergencyStatus],
        "openEmergencyStatuses": [s.value for s in EmergencyStatus if s.is_open],
        "unitStatuses": [s.value for s in UnitStatus],
        "dispatchableUnitStatuses": [s.value for s in UnitStatus if s.dispatchable],
        "movingUnitStatuses": [s.value for s in UnitStatus if s.moving],
        "events": list(EVENT_NAMES),
        "frameEvents": list(FRAME_EVENTS),
    }
