"""One emergency, for whoever holds its id: the reporter's tracking view, once or live.

- ``GET /api/emergencies/{id}``: the emergency as the /track page draws it (never the
  reporter's name or phone; of the assigned unit, while it is open, only
  ``api.openapi.TRACKING_UNIT_FIELDS``); the whole emergency for the authority. 404 for an
  id nobody reported, 410 with where its history is once it left the live state.
- ``GET /api/emergencies/{id}/stream``: the same view as Server-Sent Events, so the tracking
  page follows its report without polling. The live feed (``/api/stream``) is not for a
  reporter: it carries every emergency's location. This one carries only what the GET
  answers: a ``snapshot`` (``{"emergencies": [...], "units": [...]}``, the live feed's
  snapshot shape, so the page's ``LiveState`` folds it) each time the view changes, through
  the window in which a closed emergency stays in the live state, and it ends with
  ``emergency_archived`` (the live message) once the emergency left it, so the page can say
  that it moved to history as it happens. The view is the tracking view for every
  caller (the page shows no more); a token that matches no role is refused, as on the GET.
  No ids and no resume: a reconnect starts with the current view. Each stream holds a
  live connection slot (``Services.live``: the caps per address and in total).

A stream wakes when the read model folds a batch and sends only when the emergency or its
unit changed: the projection replaces an entity on every change and never edits one, so
comparing identities is the whole test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.auth import Role
from api.broadcast import Hub
from api.http import ApiError
from api.limits import HeldStream
from api.openapi import TRACKING_UNIT_FIELDS
from api.readmodel import ReadModel
from api.services import services_of
from schemas.codec import dumps
from schemas.entities import Emergency, Unit
from schemas.events import EmergencyArchived

# The reporter (name, phone) is for the authority only.
TRACKING_HIDDEN_FIELDS = {"reporter"}
# Where an archived emergency's history is (issue 16): the log (replay), DuckDB snapshots.
HISTORY_HINT = (
    "its history is in the event log (the /replay page, `dispatchwire replay`) and in "
    "DuckDB (`dispatchwire snapshot`, `dispatchwire query`)"
)
# A stream with nothing new looks again this often (a batch folded wakes it at once), so
# it also ends within this long once the server shuts down (``Hub.closing``).
WAKE_S = 1.0


def _find(model: ReadModel, emergency_id: str) -> Emergency:
    """The live emergency, or the refusal: 410 (moved to history), 503 (not read yet), 404."""
    emergency = model.projection.emergencies.get(emergency_id)
    if emergency is not None:
        return emergency
    archived = model.projection.archived.get(emergency_id)
    if archived is not None:
        raise _moved_to_history(archived)
    # a bootstrapping model may not have reached it yet: 503 + Retry-After, not 404
    model.require_ready("this emergency")
    raise ApiError(404, "no such emergency", [{"field": "id", "reason": "unknown emergency"}])


def _unit_on_its_way(model: ReadModel, emergency: Emergency) -> Unit | None:
    if not emergency.status.is_open:
        return None
    return model.projection.units.get(emergency.assigned_unit_id or "")


def _unit_view(unit: Unit) -> dict[str, Any]:
    return unit.model_dump(mode="json", include=set(TRACKING_UNIT_FIELDS))


async def get_emergency(request: Request) -> JSONResponse:
    services = services_of(request)
    role = services.auth.role(request, cookie=True)
    emergency = _find(services.model, request.path_params["id"])
    hidden = None if role is Role.AUTHORITY else TRACKING_HIDDEN_FIELDS
    body = emergency.model_dump(mode="json", exclude=hidden)
    unit = _unit_on_its_way(services.model, emergency)
    body["unit"] = _unit_view(unit) if unit is not None else None
    return JSONResponse(
        body, headers={"X-Log-Position": services.model.position_id, "Cache-Control": "no-store"}
    )


async def stream_emergency(request: Request) -> Response:
    services = services_of(request)
    services.auth.role(request, cookie=True)  # 401 for a token that matches no role
    emergency_id = request.path_params["id"]
    _find(services.model, emergency_id)
    address = request.client.host if request.client else "unknown"
    release = services.live.acquire(address, "track")
    return HeldStream(
        release,
        tracking_messages(services.model, services.hub, emergency_id),
        ping=services.settings.heartbeat_s,
        send_timeout=services.settings.api_client_send_timeout_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def tracking_messages(
    model: ReadModel, hub: Hub, emergency_id: str, wake_s: float = WAKE_S
) -> AsyncIterator[dict[str, str]]:
    """The stream's messages: the view whenever it changes, until the emergency leaves the
    live state (or the server shuts down)."""
    sent: tuple[Emergency, Unit | None] | None = None
    while not hub.closing:
        emergency = model.projection.emergencies.get(emergency_id)
        if emergency is None:
            archived = model.projection.archived.get(emergency_id)
            if archived is not None:
                yield {"event": "emergency_archived", "data": dumps(archived.live_data())}
            return
        unit = _unit_on_its_way(model, emergency)
        if sent is None or sent[0] is not emergency or sent[1] is not unit:
            sent = (emergency, unit)
            state = {
                "emergencies": [emergency.model_dump(mode="json", exclude=TRACKING_HIDDEN_FIELDS)],
                "units": [_unit_view(unit)] if unit is not None else [],
            }
            yield {"event": "snapshot", "data": dumps(state)}
        await model.moved(wake_s)


def _moved_to_history(archived: EmergencyArchived) -> ApiError:
    """410 Gone for an emergency that left the live state: when it closed and moved."""
    data = archived.live_data()
    return ApiError(
        410,
        f"emergency {archived.emergency_id} is {archived.status.value} and moved to history at "
        f"{data['archived_at']}; {HISTORY_HINT}",
        [{"field": "id", "reason": "archived: closed and moved to history"}],
        headers={"Cache-Control": "no-store"},
        emergency_id=archived.emergency_id,
        emergency_status=archived.status.value,
        closed_at=data["closed_at"],
        archived_at=data["archived_at"],
        history=["replay", "duckdb"],
    )
