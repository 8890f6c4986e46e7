"""HTTP commands: validate, write to Kafka, wait for the outcome on ``dispatch.events``.

The outcome is the first event carrying the command's ``command_id`` that answers it
(``emergency_created`` for a report, ``emergency_updated`` for dispatch / complete /
cancel, ``unit_status_update`` for a status change) or its ``command_rejected``. The
waiter is registered before the command is written, so a fast worker cannot answer
before anyone listens. Answers: 201/200 with the entities, 409 with the reason, 202 with
the command id when the outcome is later than ``DISPATCHWIRE_COMMAND_TIMEOUT_S``, 503
when Kafka did not take the command, and 503 with ``Retry-After`` instead of 404 for an
id the read model does not know while it is still bootstrapping (it may be further on).

A report's emergency id is derived from its command id (``schemas.commands``), so the
202 for a report and every retry of it name the emergency the worker creates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import AUTHORITY, RATE_EXEMPT, REPORTERS, Role
from api.http import ApiError, read_model_body
from api.services import Services, services_of
from dispatchwire.errors import KafkaUnavailable
from dispatchwire.settings import Settings
from schemas.commands import (
    CancelEmergency,
    Command,
    CompleteEmergency,
    DispatchEmergency,
    ReportEmergency,
    SetUnitStatus,
)
from schemas.events import (
    CommandRejectedEvent,
    CommandRepeated,
    EmergencyCreated,
    EmergencyUpdated,
    Event,
    UnitStatusUpdate,
)
from schemas.requests import (
    CancelRequest,
    CompleteRequest,
    DispatchRequest,
    ReportRequest,
    UnitStatusRequest,
)
from views.mapspec import road_network

log = logging.getLogger(__name__)


def region_for_report(body: ReportRequest, settings: Settings) -> str:
    """The region of the report's location on the network every part routes on
    (``views.mapspec.road_network``: ``DISPATCHWIRE_OSM_FILE``'s, else Helsinki); 422 for a
    point outside the served area; ``DISPATCHWIRE_API_FALLBACK_REGION`` if there is no
    network file."""
    try:
        network = road_network(settings)
    except (OSError, ValueError, LookupError):
        fallback = settings.api_fallback_region
        log.warning("no road network for (%s, %s); using %s", body.lat, body.lon, fallback)
        return fallback
    if not network.in_service_area(body.lat, body.lon):
        south, west, north, east = network.bbox
        reason = (
            f"outside the served area ({network.name}: latitude {south:.4f} to "
            f"{north:.4f}, longitude {west:.4f} to {east:.4f})"
        )
        raise ApiError(
            422,
            "this location is outside the area we serve",
            [{"field": "lat", "reason": reason}, {"field": "lon", "reason": reason}],
        )
    return network.region_for(body.lat, body.lon)


def warm_region_lookup(settings: Settings) -> None:
    """Load the road network once, off the event loop, before the first report needs it."""
    try:
        road_network(settings)
    except (OSError, ValueError, LookupError):
        log.warning("no road network: reports go to DISPATCHWIRE_API_FALLBACK_REGION")


REPORT_CONTENT = {"region", "type", "priority", "lat", "lon", "description", "reporter"}


def same_report(command: ReportEmergency) -> Callable[[Event], bool]:
    """Whether a known outcome is this report's own: an ``emergency_created`` with the
    same content (a retry). Another client's report under the same id is not answered
    with it: the worker refuses that one."""
    wanted = command.model_dump(include=REPORT_CONTENT)

    def same(event: Event) -> bool:
        return (
            isinstance(event, EmergencyCreated)
            and event.emergency.model_dump(include=REPORT_CONTENT) == wanted
        )

    return same


async def submit(
    services: Services,
    command: Command,
    answers: tuple[type, ...],
    same: Callable[[Event], bool] | None = None,
) -> Event | None:
    """Write ``command`` and wait for its outcome; None when it is late. A recently seen
    outcome of its command id answers at once only if ``same`` says it is this command's:
    a command id is the client's choice, so it may be another client's (issue 11)."""
    model = services.model
    loop = asyncio.get_running_loop()
    deadline = loop.time() + services.settings.command_timeout_s
    outcome = model.outcomes.expect(command.command_id, answers, recent=same is not None)
    if outcome.done() and not (same is not None and same(outcome.result())):
        outcome = model.outcomes.expect(command.command_id, answers, recent=False)
    try:
        try:
            await services.bus.send(command)
        except KafkaUnavailable as exc:
            services.metrics.commands.labels(command.kind, "unavailable").inc()
            raise ApiError(503, str(exc), command_id=command.command_id) from exc
        try:
            result = await asyncio.wait_for(
                asyncio.shield(outcome), max(deadline - loop.time(), 0.05)
            )
        except TimeoutError:
            services.metrics.commands.labels(command.kind, "late").inc()
            return None
        if isinstance(result, CommandRepeated):  # a retry older than the outcome memory
            services.metrics.commands.labels(command.kind, "repeated").inc()
            return None
        kind = "rejected" if isinstance(result, CommandRejectedEvent) else "accepted"
        services.metrics.commands.labels(command.kind, kind).inc()
        return result
    finally:
        model.outcomes.forget(command.command_id, outcome)


def _rejected(event: CommandRejectedEvent) -> JSONResponse:
    return JSONResponse(
        {"error": "rejected", "reason": event.reason, "fields": [], "command_id": event.command_id},
        status_code=409,
    )


def _late(command: Command, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"status": "accepted", "command_id": command.command_id, **extra}, status_code=202
    )


async def report_emergency(request: Request) -> JSONResponse:
    services = services_of(request)
    if services.settings.require_reporter_token:
        services.auth.require(request, REPORTERS)
    role = services.auth.role(request) or Role.REPORTER
    if role not in RATE_EXEMPT:
        services.report_limiter.check(request.client.host if request.client else "unknown")
    try:
        body = await read_model_body(request, ReportRequest, services.settings.max_body_bytes)
    except ApiError as exc:
        for field in exc.fields:
            if field["field"] == "region":
                field["reason"] = "the server derives the region from lat and lon; omit it"
        raise
    fields = body.model_dump(exclude={"command_id"}, exclude_none=True)
    if body.command_id:
        fields["command_id"] = body.command_id
    command = ReportEmergency(
        region=region_for_report(body, services.settings),
        issued_by=role.value,
        **fields,
    )
    outcome = await submit(services, command, (EmergencyCreated,), same=same_report(command))
    if outcome is None:
        return _late(command, emergency_id=command.emergency_id)
    if isinstance(outcome, CommandRejectedEvent):
        return _rejected(outcome)
    assert isinstance(outcome, EmergencyCreated)
    return JSONResponse(
        outcome.live_data(),
        status_code=201,
        headers={"Location": f"/api/emergencies/{outcome.emergency.id}"},
    )


def _known_emergency_region(services: Services, emergency_id: str) -> str:
    emergency = services.model.projection.emergencies.get(emergency_id)
    if emergency is None:
        services.model.require_ready("commands")
        raise ApiError(
            404, f"no emergency {emergency_id!r}", [{"field": "id", "reason": "unknown emergency"}]
        )
    return emergency.region


async def _emergency_command(
    request: Request, request_model: type[BaseModel], build: Any
) -> JSONResponse:
    services = services_of(request)
    role = services.auth.require(request, AUTHORITY)
    emergency_id = request.path_params["id"]
    body = await read_model_body(
        request, request_model, services.settings.max_body_bytes, allow_empty=True
    )
    region = _known_emergency_region(services, emergency_id)
    extra = body.model_dump(exclude_none=True)
    command = build(region=region, emergency_id=emergency_id, issued_by=role.value, **extra)
    outcome = await submit(services, command, (EmergencyUpdated,))
    if outcome is None:
        return _late(command)
    if isinstance(outcome, CommandRejectedEvent):
        return _rejected(outcome)
    assert isinstance(outcome, EmergencyUpdated)
    return JSONResponse(outcome.live_data())


async def dispatch_emergency(request: Request) -> JSONResponse:
    return await _emergency_command(request, DispatchRequest, DispatchEmergency)


async def complete_emergency(request: Request) -> JSONResponse:
    return await _emergency_command(request, CompleteRequest, CompleteEmergency)


async def cancel_emergency(request: Request) -> JSONResponse:
    return await _emergency_command(request, CancelRequest, CancelEmergency)


async def set_unit_status(request: Request) -> JSONResponse:
    services = services_of(request)
    unit_id = request.path_params["id"]
    role = services.auth.require_unit(request, unit_id)
    body = await read_model_body(request, UnitStatusRequest, services.settings.max_body_bytes)
    unit = services.model.projection.units.get(unit_id)
    if unit is None:
        services.model.require_ready("commands")
        raise ApiError(404, f"no unit {unit_id!r}", [{"field": "id", "reason": "unknown unit"}])
    command = SetUnitStatus(
        region=unit.region,
        unit_id=unit_id,
        issued_by=role.value,
        **body.model_dump(exclude_none=True),
    )
    outcome = await submit(services, command, (UnitStatusUpdate,))
    if outcome is None:
        return _late(command)
    if isinstance(outcome, CommandRejectedEvent):
        return _rejected(outcome)
    assert isinstance(outcome, UnitStatusUpdate)
    return JSONResponse(outcome.live_data())
