"""HTTP routes of the analytics part, mounted by the API: ``routes(settings)``.

- ``GET /api/snapshot`` (authority): a fresh snapshot file (see ``snapshot.py``); the
  ``X-Log-Position`` header says which log position it reflects.
- ``GET /api/replay/stream?from=&to=&speed=`` (authority), or ``from_position=`` /
  ``to_position=`` (``"0:10,1:4"``): a replay as SSE. First a ``snapshot`` of the state at
  the window start (the fold of everything before it), then every event of the window
  under its live message name (``emergency_created``, ``emergency_updated``, ...) paced at
  ``speed`` (a factor, or ``max`` for no pacing), then ``replay_end``. Event ids are
  ``partition:offset``; the snapshot's id is the start position. With ``clock=1`` the
  stream also says where in time the replay is, for a time bar: a ``replay_clock``
  (``{"time", "time_ms"}``: the Kafka time of the record that follows, at most every
  ``CLOCK_EVERY_S`` of wall time, and once more for the last record before ``replay_end``).
  It has no id and is opt-in, so the message list of a plain replay stays the live one.

Both take ``Authorization: Bearer <authority token>`` or ``?token=`` (for EventSource,
which cannot set headers).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from analytics.position import format_position, parse_position
from analytics.replay import LogWindow, Pacer, Window, fold_until
from analytics.snapshot import take_snapshot
from dispatchwire.errors import DispatchwireError
from dispatchwire.settings import Settings
from schemas import SchemaError, decode_event
from schemas.codec import dumps

log = logging.getLogger(__name__)

CLOCK_EVERY_S = 0.1  # at most ten clock messages a second: a time bar needs no more


COOKIE = "dw_token"  # the API's token cookie (api.auth.COOKIE)


def _unauthorised(request: Request, settings: Settings) -> Response | None:
    """Without the API's roles (``routes(authorize=None)``): the authority token by header,
    ``?token=`` or cookie; 401 without one, 403 for another known token."""
    token = request.query_params.get("token") or request.cookies.get(COOKIE)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    expected = settings.authority_token.get_secret_value()
    if token and hmac.compare_digest(token.encode(), expected.encode()):
        return None
    others = (settings.unit_token.get_secret_value(), settings.reporter_token.get_secret_value())
    if token and any(hmac.compare_digest(token.encode(), t.encode()) for t in others):
        return JSONResponse(
            {"error": "this needs the authority token",
             "fields": [{"field": "Authorization", "reason": "role not allowed"}]},
            status_code=403)
    reason = "missing" if not token else "not the authority token"
    return JSONResponse(
        {"error": "authority token required",
         "fields": [{"field": "Authorization", "reason": reason}]},
        status_code=401, headers={"WWW-Authenticate": "Bearer"},
    )


def _parse_time(name: str, text: str, errors: list[dict[str, str]]) -> datetime | None:
    try:
        if text.isascii() and text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):  # OSError: a year the C library refuses
        errors.append({"field": name, "reason": "expected an ISO-8601 time or epoch milliseconds"})
        return None


def parse_replay_query(params: Any) -> tuple[Window, float | None, list[dict[str, str]]]:
    """Window and speed from a query string; the list holds field-level errors."""
    errors: list[dict[str, str]] = []
    window: dict[str, Any] = {}
    for name, key in (("from", "start_time"), ("to", "stop_time")):
        if params.get(name):
            window[key] = _parse_time(name, params[name], errors)
    for name, key in (("from_position", "start"), ("to_position", "stop")):
        if params.get(name):
            try:
                window[key] = parse_position(params[name])
            except ValueError as exc:
                errors.append({"field": name, "reason": str(exc)})
    speed: float | None = 1.0
    raw_speed = params.get("speed", "1")
    if raw_speed in ("max", "0"):
        speed = None
    else:
        try:
            speed = float(raw_speed)
            if not 0 < speed <= 100_000:
                raise ValueError
        except ValueError:
            errors.append({"field": "speed",
                           "reason": "a factor between 0 and 100000, or 'max'"})
    start, stop = window.get("start_time"), window.get("stop_time")
    if start and stop and stop <= start:
        errors.append({"field": "to", "reason": "must be after 'from'"})
    return Window(**window), speed, errors


def routes(settings: Settings,
           authorize: Callable[[Request], None] | None = None) -> list[Route]:
    """The routes; ``authorize(request)`` (the API's role check, raising its own error
    answer) admits the authority, else the authority token alone does."""

    def denied(request: Request) -> Response | None:
        if authorize is None:
            return _unauthorised(request, settings)
        authorize(request)
        return None

    async def snapshot_download(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        target = settings.data_dir / "downloads" / f"{uuid.uuid4().hex}.duckdb"
        try:
            info = await run_in_threadpool(take_snapshot, settings, target)
        except DispatchwireError as exc:
            return JSONResponse({"error": str(exc), "fields": []}, status_code=503)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return FileResponse(
            target, media_type="application/vnd.duckdb",
            filename=f"dispatchwire-{stamp}.duckdb",
            headers={"X-Log-Position": info.position},
            background=BackgroundTask(target.unlink, missing_ok=True),
        )

    async def replay_stream(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        window, speed, errors = parse_replay_query(request.query_params)
        clock = request.query_params.get("clock", "0")
        if clock not in ("0", "1"):
            errors.append({"field": "clock", "reason": "1 (send replay_clock messages) or 0"})
        if errors:
            return JSONResponse({"error": "invalid replay request", "fields": errors},
                                status_code=400)
        try:
            resolved = await run_in_threadpool(LogWindow, settings, window)
        except DispatchwireError as exc:
            return JSONResponse({"error": str(exc), "fields": []}, status_code=503)
        return EventSourceResponse(
            _replay_messages(settings, resolved, speed, clock=clock == "1"),
            ping=settings.heartbeat_s)

    return [
        Route("/api/snapshot", snapshot_download, methods=["GET"]),
        Route("/api/replay/stream", replay_stream, methods=["GET"]),
    ]


def _clock_message(timestamp_ms: int) -> dict[str, Any]:
    iso = datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    return {"event": "replay_clock", "data": dumps({"time": iso, "time_ms": timestamp_ms})}


async def _replay_messages(settings: Settings, window: LogWindow, speed: float | None,
                           clock: bool = False) -> AsyncIterator[dict[str, Any]]:
    start = format_position(window.start)
    state = await run_in_threadpool(fold_until, settings, window.start, window.topic)
    yield {"event": "snapshot", "id": start,
           "data": dumps({**state.as_json(), "position": start,
                          "replay": {"from": start, "to": format_position(window.stop),
                                     "speed": speed, "events": window.size}})}
    pacer = Pacer(speed)
    records = window.records()
    sent = 0
    clock_ms = last_ms = None  # the time last told by a clock; the last record's time
    clock_wall = 0.0
    try:
        async for rec in iterate_in_threadpool(records):
            try:
                event = decode_event(rec.value)
            except SchemaError:
                log.warning("replay skips undecodable record %d:%d", rec.partition, rec.offset)
                continue
            wait = pacer.delay(rec.timestamp)
            if wait:
                await asyncio.sleep(wait)
            sent += 1
            last_ms = rec.timestamp
            if clock and last_ms != clock_ms and time.monotonic() - clock_wall >= CLOCK_EVERY_S:
                clock_ms, clock_wall = last_ms, time.monotonic()
                yield _clock_message(last_ms)
            yield {"event": event.event, "id": f"{rec.partition}:{rec.offset}",
                   "data": dumps(event.live_data())}
        if clock and last_ms is not None and last_ms != clock_ms:
            yield _clock_message(last_ms)
        yield {"event": "replay_end", "id": format_position(window.stop),
               "data": dumps({"position": format_position(window.stop), "events": sent})}
    finally:
        try:
            records.close()
        except ValueError:  # still running in a worker thread; it closes when it returns
            log.debug("replay reader still busy at disconnect")
        else:
            window.close()
