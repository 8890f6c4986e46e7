"""``/openapi.json``: an OpenAPI 3.1 document of the endpoints, written by hand, with the
request and entity schemas generated from ``schemas`` (the same JSON Schemas
``dispatchwire schemas export`` writes).

It describes what the server answers, status by status, and schemathesis holds it to that
against a live server (``tests/security/test_openapi_live.py``): every refusal a route can
give is listed (401/403 from the role check, 415/400/413/422 from the body reader, 429 from
the report limit, 503 when Kafka is away).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import models_json_schema

from dispatchwire import __version__
from dispatchwire.settings import Settings
from schemas.entities import Emergency, Unit
from schemas.requests import (
    CancelRequest,
    CompleteRequest,
    DispatchRequest,
    ReportRequest,
    UnitStatusRequest,
)
from views.mapspec import road_network

REF = "#/components/schemas/{model}"
REQUESTS = (ReportRequest, DispatchRequest, CompleteRequest, CancelRequest, UnitStatusRequest)
ENTITIES = (Emergency, Unit)
# The unit fields the tracking view (``GET /api/emergencies/{id}`` without an authority
# token, what the /track page draws) shows of the assigned unit; ``api.tracking`` applies them.
TRACKING_UNIT_FIELDS = (
    "id",
    "callsign",
    "type",
    "status",
    "lat",
    "lon",
    "eta_s",
    "heading",
    "version",
)
ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": r"^[A-Za-z0-9_.:\-]+$",
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _ref("Error")
UNAUTHORISED = {
    "401": _json(ERROR, "missing or unknown token"),
    "403": _json(ERROR, "the token's role may not do this"),
}
BODY_ERRORS = {
    "400": _json(ERROR, "not JSON (or nested too deeply, or an integer of over 4300 digits)"),
    "413": _json(ERROR, "body larger than DISPATCHWIRE_MAX_BODY_BYTES"),
    "415": _json(ERROR, "the body is not declared Content-Type: application/json"),
    "422": _json(ERROR, "a field is invalid (fields name each one and the reason)"),
}
UNAVAILABLE = {
    "503": _json(
        ERROR,
        "Kafka did not take the command, or (with Retry-After) "
        "the read model is still bootstrapping; retry with the "
        "same command_id",
    )
}
ACCEPTED = _json(
    {
        "type": "object",
        "required": ["status", "command_id"],
        "properties": {
            "status": {"const": "accepted"},
            "command_id": {"type": "string"},
            "emergency_id": {
                "type": "string",
                "description": "for a report: the emergency it "
                "creates (the same for every retry with this command_id)",
            },
        },
    },
    "written, outcome not seen within DISPATCHWIRE_COMMAND_TIMEOUT_S",
)
REJECTED = _json(
    ERROR,
    "the worker rejected the command (reason says why), or its "
    "command_id is already used by a different command",
)
# every answer that is an event's live payload carries its event_id (as the live message does)
EVENT_ID = {
    "type": "string",
    "description": "the event's id (<command_id>:<n>), the same in the live message of that event",
}
OUTCOME = _json(
    {
        "type": "object",
        "required": ["event_id", "action", "emergency"],
        "properties": {
            "event_id": EVENT_ID,
            "action": {"type": "string"},
            "emergency": _ref("Emergency"),
            "unit": _nullable(_ref("Unit")),
            "dispatch": {"anyOf": [{"type": "object"}, {"type": "null"}]},
            "reason": {"type": ["string", "null"]},
        },
    },
    "the emergency and unit after the command",
)
UNIT_STATUS = _json(
    {
        "type": "object",
        "required": ["event_id", "unit_id", "status", "unit"],
        "properties": {
            "event_id": EVENT_ID,
            "unit_id": {"type": "string"},
            "status": {"type": "string"},
            "emergency_id": {"type": ["string", "null"]},
            "unit": _ref("Unit"),
        },
    },
    "unit_status_update: the unit after the change",
)
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
OPTIONAL_BEARER: list[dict[str, list[str]]] = [{}, {"bearer": []}]


def _command(
    summary: str,
    body: str,
    ok: dict[str, Any],
    code: str = "200",
    path_id: bool = True,
    security: list[dict[str, Any]] = BEARER,
    required: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": security,
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": _ref(body)}},
        },
        "responses": {
            code: ok,
            "202": ACCEPTED,
            "404": _json(ERROR, "unknown id"),
            "409": REJECTED,
            **UNAUTHORISED,
            **BODY_ERRORS,
            **UNAVAILABLE,
        },
    }
    if path_id:
        op["parameters"] = [ID_PARAM]
    return {"post": op}


def _get(summary: str, schema: dict[str, Any], secured: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": _json(schema, "ok")}}
    if secured:
        op["security"] = BEARER
        op["responses"].update(UNAUTHORISED)
    return {"get": op}


def _stream(
    summary: str, params: tuple[tuple[str, str], ...], errors: dict[str, Any], description: str = ""
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            **({"description": description} if description else {}),
            "security": BEARER,
            "parameters": [
                {
                    "name": n,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": d,
                }
                for n, d in params
            ],
            "responses": {
                "200": {
                    "description": "text/event-stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **UNAUTHORISED,
                **errors,
            },
        }
    }


def _tracking_view(components: dict[str, Any]) -> dict[str, Any]:
    """The emergency without its reporter (present for authority only), plus the unit on
    its way (``null`` when none or closed)."""
    view = copy.deepcopy(components["Emergency"])
    view["title"] = "TrackingView"
    view["description"] = (
        "An emergency as its reporter follows it; `reporter` only for the authority token"
    )
    unit = copy.deepcopy(components["Unit"])
    unit["title"] = "TrackingUnit"
    unit["properties"] = {k: v for k, v in unit["properties"].items() if k in TRACKING_UNIT_FIELDS}
    unit["required"] = [k for k in unit.get("required", []) if k in TRACKING_UNIT_FIELDS]
    components["TrackingUnit"] = unit
    view["properties"]["unit"] = _nullable(_ref("TrackingUnit"))
    view["required"] = [*view.get("required", []), "unit"]
    return view


def _served_area(report: dict[str, Any], settings: Settings) -> None:
    """A report's lat/lon bounds: the served area (the road network's box), not the Earth;
    a point outside it is a 422."""
    try:
        south, west, north, east = road_network(settings).bbox
    except (OSError, ValueError, LookupError):
        return
    for field, low, high in (("lat", south, north), ("lon", west, east)):
        prop = report["properties"][field]
        prop["minimum"], prop["maximum"] = low, high
        prop["description"] = f"{prop.get('description', '')}, inside the served area".strip(", ")


def openapi_document(settings: Settings) -> dict[str, Any]:
    _, requests = models_json_schema([(m, "validation") for m in REQUESTS], ref_template=REF)
    _, entities = models_json_schema([(m, "serialization") for m in ENTITIES], ref_template=REF)
    components = {**requests.get("$defs", {}), **entities.get("$defs", {})}
    components["Error"] = {
        "type": "object",
        "required": ["error", "fields"],
        "properties": {
            "error": {"type": "string"},
            "fields": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "reason"],
                    "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
    }
    components["TrackingView"] = _tracking_view(components)
    _served_area(components["ReportRequest"], settings)
    state = {
        "type": "object",
        "required": ["emergencies", "units", "position"],
        "properties": {
            "emergencies": {"type": "array", "items": _ref("Emergency")},
            "units": {"type": "array", "items": _ref("Unit")},
            "position": {"type": "string", "description": "log position, usable as Last-Event-ID"},
        },
    }
    emergency = components["Emergency"]
    components["CreatedEmergency"] = {
        **emergency,
        "title": "CreatedEmergency",
        "properties": {**emergency["properties"], "event_id": EVENT_ID},
        "required": [*emergency.get("required", []), "event_id"],
    }
    # anyone may report (rate limited per client IP); a token is optional unless
    # DISPATCHWIRE_REQUIRE_REPORTER_TOKEN is set
    report = _command(
        "Report an emergency (rate limited per client IP)",
        "ReportRequest",
        _json(_ref("CreatedEmergency"), "created, status PENDING"),
        "201",
        path_id=False,
        security=OPTIONAL_BEARER,
        required=True,
    )
    report["post"]["responses"]["429"] = {
        **_json(ERROR, "too many reports from this address; see Retry-After"),
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    }
    report["post"]["responses"].pop("404")
    paths = {
        "/api/emergencies": {
            **report,
            **_get("All emergencies", {"type": "array", "items": _ref("Emergency")}),
        },
        "/api/emergencies/{id}": {
            "get": {
                "summary": "One emergency: the reporter's tracking view (whole for authority)",
                "security": OPTIONAL_BEARER,
                "parameters": [ID_PARAM],
                "responses": {
                    "200": _json(_ref("TrackingView"), "ok"),
                    "401": _json(ERROR, "a token that matches no role"),
                    "404": _json(ERROR, "unknown id"),
                    "410": _json(ERROR, "closed and moved to history (replay, DuckDB)"),
                },
            }
        },
        "/api/emergencies/{id}/stream": {
            "get": {
                "summary": "One emergency's tracking view as Server-Sent Events (the /track page)",
                "description": "A `snapshot` message ({emergencies: [the view], units: [the "
                "unit on its way, if any]}) each time the view changes, closed included; "
                "it ends with `emergency_archived` when the emergency moves to history. The "
                "tracking view for every caller; no ids, no resume. Holds a live connection slot.",
                "security": OPTIONAL_BEARER,
                "parameters": [ID_PARAM],
                "responses": {
                    "200": {
                        "description": "text/event-stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": _json(ERROR, "a token that matches no role"),
                    "404": _json(ERROR, "unknown id"),
                    "410": _json(ERROR, "closed and moved to history (replay, DuckDB)"),
                    "429": _json(ERROR, "too many live connections from this address"),
                    "503": _json(ERROR, "live connection limit, or the read model bootstrapping"),
                },
            }
        },
        "/api/emergencies/{id}/dispatch": _command(
            "Dispatch the best (or a named) unit", "DispatchRequest", OUTCOME
        ),
        "/api/emergencies/{id}/complete": _command("Complete", "CompleteRequest", OUTCOME),
        "/api/emergencies/{id}/cancel": _command("Cancel", "CancelRequest", OUTCOME),
        "/api/units/{id}/status": _command(
            "Set a unit's status (authority, or that unit's own token)",
            "UnitStatusRequest",
            UNIT_STATUS,
            required=True,
        ),
        "/api/units": _get("All units", {"type": "array", "items": _ref("Unit")}),
        "/api/state": _get("Current state with its log position", state),
        "/api/stream": _stream(
            "Server-Sent Events: snapshot, then every event; resume with Last-Event-ID "
            "(header) or ?last_event_id=",
            (
                ("token", "role token (EventSource cannot send headers)"),
                ("last_event_id", "resume after this id (first connect)"),
                ("region", "comma-separated regions"),
                ("events", "comma-separated event names"),
            ),
            {
                "400": _json(ERROR, "unknown event name in ?events="),
                "503": _json(ERROR, "the read model is still bootstrapping (see Retry-After)"),
            },
            description="Every event message's data carries its `event_id`: the `id` is a "
            "log position, so a copy of an event the worker re-published has "
            "another id but the same event_id.",
        ),
        "/ws": {
            "get": {
                "summary": "WebSocket: the same messages as {event, id, data} frames",
                "security": BEARER,
                "responses": {"101": {"description": "upgrade"}},
            }
        },
        "/api/snapshot": {
            "get": {
                "summary": "A DuckDB snapshot file of the sink (authority)",
                "security": BEARER,
                "parameters": [
                    {
                        "name": "token",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "authority token",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "a DuckDB database file",
                        "content": {
                            "application/vnd.duckdb": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **UNAUTHORISED,
                    "503": _json(ERROR, "no sink database to copy"),
                },
            }
        },
        "/api/replay/stream": _stream(
            "A replay of a window of the log as Server-Sent Events (authority)",
            (
                ("token", "authority token (EventSource cannot send headers)"),
                ("from", "window start: ISO-8601 time or epoch milliseconds"),
                ("to", "window end: ISO-8601 time or epoch milliseconds"),
                ("from_position", "window start: a log position (e.g. 12.0.7, any id)"),
                ("to_position", "window end: a log position (e.g. 12.0.7)"),
                ("speed", "a factor, or max"),
                ("clock", "1: send replay_clock messages"),
            ),
            {
                "400": _json(ERROR, "a query parameter is invalid"),
                "503": _json(ERROR, "Kafka unreachable, or DISPATCHWIRE_API_MAX_REPLAYS open"),
            },
        ),
        "/healthz": _get("Process is alive", {"type": "object"}, secured=False),
        "/readyz": {
            "get": {
                "summary": "Kafka reachable and read model caught up",
                "responses": {
                    "200": _json({"type": "object"}, "ready"),
                    "503": _json({"type": "object"}, "not ready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (outside dev mode: the authority token or "
                "DISPATCHWIRE_METRICS_TOKEN)",
                "security": OPTIONAL_BEARER,
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **UNAUTHORISED,
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "dispatchwire live API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
