"""``/openapi.json``: an OpenAPI 3.1 document of the endpoints, written by hand, with the
request and entity schemas generated from ``schemas`` (the same JSON Schemas
``dispatchwire schemas export`` writes)."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from dispatchwire import __version__
from schemas.entities import Emergency, Unit
from schemas.requests import (
    CancelRequest,
    CompleteRequest,
    DispatchRequest,
    ReportRequest,
    UnitStatusRequest,
)

REF = "#/components/schemas/{model}"
MODELS = (ReportRequest, DispatchRequest, CompleteRequest, CancelRequest, UnitStatusRequest,
          Emergency, Unit)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _ref("Error")
ERRORS = {
    "400": _json(ERROR, "malformed JSON"),
    "401": _json(ERROR, "missing or unknown token"),
    "403": _json(ERROR, "the token's role may not do this"),
    "413": _json(ERROR, "body larger than DISPATCHWIRE_MAX_BODY_BYTES"),
    "422": _json(ERROR, "a field is invalid (fields name each one and the reason)"),
    "503": _json(ERROR, "Kafka did not take the command, or (with Retry-After) the read "
                 "model is still bootstrapping; retry with the same command_id"),
}
ACCEPTED = _json({"type": "object", "properties": {"status": {"const": "accepted"},
                                                     "command_id": {"type": "string"}}},
                 "written, outcome not seen within DISPATCHWIRE_COMMAND_TIMEOUT_S")
REPORT_ACCEPTED = _json({"type": "object", "properties": {
    "status": {"const": "accepted"}, "command_id": {"type": "string"},
    "emergency_id": {"type": "string", "description": "the emergency this report creates "
                     "(the same for every retry with this command_id)"}}},
    "written, outcome not seen within DISPATCHWIRE_COMMAND_TIMEOUT_S")
REJECTED = _json(ERROR, "the worker rejected the command; reason says why")
# every answer that is an event's live payload carries its event_id (as the live message does)
EVENT_ID = {"type": "string", "description": "the event's id (<command_id>:<n>), the same "
            "in the live message of that event"}
OUTCOME = _json({"type": "object", "properties": {"event_id": EVENT_ID,
                                                    "action": {"type": "string"},
                                                    "emergency": _ref("Emergency"),
                                                    "unit": _ref("Unit")}},
                "the emergency and unit after the command")
BEARER = [{"bearer": []}]


def _command(summary: str, body: str, ok: dict[str, Any], code: str = "200",
             path_id: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": BEARER,
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": _ref(body)}}},
        "responses": {code: ok, "202": ACCEPTED, "404": _json(ERROR, "unknown id"),
                      "409": REJECTED, **ERRORS},
    }
    if path_id:
        op["parameters"] = [{"name": "id", "in": "path", "required": True,
                             "schema": {"type": "string"}}]
    return {"post": op}


def _get(summary: str, schema: dict[str, Any], secured: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": _json(schema, "ok")}}
    if secured:
        op["security"] = BEARER
    return {"get": op}


def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in MODELS], ref_template=REF)
    components = dict(defs.get("$defs", {}))
    components["Error"] = {
        "type": "object", "required": ["error", "fields"],
        "properties": {"error": {"type": "string"}, "fields": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"},
                                             "reason": {"type": "string"}}}}},
    }
    state = {"type": "object", "properties": {
        "emergencies": {"type": "array", "items": _ref("Emergency")},
        "units": {"type": "array", "items": _ref("Unit")},
        "position": {"type": "string", "description": "log position, usable as Last-Event-ID"},
    }}
    emergency = components["Emergency"]
    components["CreatedEmergency"] = {
        **emergency, "title": "CreatedEmergency",
        "properties": {**emergency["properties"], "event_id": EVENT_ID},
        "required": [*emergency.get("required", []), "event_id"],
    }
    report = _command("Report an emergency (rate limited per client IP)", "ReportRequest",
                      _json(_ref("CreatedEmergency"), "created, status PENDING"), "201",
                      path_id=False)
    report["post"]["requestBody"]["required"] = True
    report["post"]["responses"]["202"] = REPORT_ACCEPTED
    paths = {
        "/api/emergencies": {**report, **_get("All emergencies", {
            "type": "array", "items": _ref("Emergency")})},
        "/api/emergencies/{id}": {"get": {
            "summary": "One emergency (the reporter's tracking view)",
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": _json(_ref("Emergency"), "ok"),
                          "404": _json(ERROR, "unknown id")}}},
        "/api/emergencies/{id}/dispatch": _command("Dispatch the best (or a named) unit",
                                                   "DispatchRequest", OUTCOME),
        "/api/emergencies/{id}/complete": _command("Complete", "CompleteRequest", OUTCOME),
        "/api/emergencies/{id}/cancel": _command("Cancel", "CancelRequest", OUTCOME),
        "/api/units/{id}/status": _command("Set a unit's status", "UnitStatusRequest",
                                           _json({"type": "object", "properties": {
                                               "event_id": EVENT_ID,
                                               "unit": _ref("Unit")}}, "unit_status_update")),
        "/api/units": _get("All units", {"type": "array", "items": _ref("Unit")}),
        "/api/state": _get("Current state with its log position", state),
        "/api/stream": {"get": {
            "summary": "Server-Sent Events: snapshot, then every event; resume with "
                       "Last-Event-ID (header) or ?last_event_id=",
            "description": "Every event message's data carries its `event_id`: the `id` is a "
                           "log position, so a copy of an event the worker re-published "
                           "has another id but the same event_id. 503 with Retry-After "
                           "while the read model is still bootstrapping.",
            "security": BEARER,
            "parameters": [
                {"name": n, "in": "query", "required": False, "schema": {"type": "string"},
                 "description": d} for n, d in (
                    ("token", "role token (EventSource cannot send headers)"),
                    ("last_event_id", "resume after this id (first connect)"),
                    ("region", "comma-separated regions"),
                    ("events", "comma-separated event names"))],
            "responses": {"200": {"description": "text/event-stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}}, **ERRORS}}},
        "/ws": {"get": {"summary": "WebSocket: the same messages as {event, id, data} frames",
                        "security": BEARER, "responses": {"101": {"description": "upgrade"}}}},
        "/healthz": _get("Process is alive", {"type": "object"}, secured=False),
        "/readyz": _get("Kafka reachable and read model caught up", {"type": "object"},
                        secured=False),
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "text exposition format"}}}},
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
