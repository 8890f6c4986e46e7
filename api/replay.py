"""The analytics routes of the API: a snapshot download and a log replay as SSE.

- ``GET /api/snapshot`` (authority): a fresh snapshot file (``analytics.snapshot``); the
  ``X-Log-Position`` header says which log position it reflects.
- ``GET /api/replay/stream?from=&to=&speed=`` (authority), or ``from_position=`` /
  ``to_position=`` (log positions, ``"10.4"``): a replay as SSE. First a ``snapshot`` of
  the state at the window start (the fold of everything before it), then every event of the window
  under its live message name (``emergency_created``, ``emergency_updated``, ...) paced at
  ``speed`` (a factor, or ``max`` for no pacing), then ``replay_end``. Every id is a log
  position (``schemas.position``, ``"12.0.7"``): the snapshot's the window start, each
  event's the position after it (a client that stops can resume with
  ``from_position=<the last id>``, or hand it to the live stream as ``Last-Event-ID``), and
  ``replay_end``'s the window end. With ``clock=1`` the
  stream also says where in time the replay is, for a time bar: a ``replay_clock``
  (``{"time", "time_ms"}``: the Kafka time of the record that follows, at most every
  ``CLOCK_EVERY_S`` of wall time, and once more for the last record before ``replay_end``).
  It has no id and is opt-in, so the message list of a plain replay stays the live one.

Both are for the authority (``Auth.require_authority``: header, ``?token=`` for
EventSource, or the cookie): 401 without a token or with an unknown one, 403 for another
role. The window is parsed by the replay library (``analytics.replay.parse_replay_query``),
as for the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from analytics.logio import LogWindow
from analytics.replay import Pacer, fold_until, parse_replay_query
from analytics.snapshot import take_snapshot
from api.auth import Auth
from api.http import ApiError
from api.limits import HeldStream, LiveConnections
from dispatchwire.errors import DispatchwireError
from dispatchwire.settings import Settings
from schemas import SchemaError, decode_event
from schemas.codec import dumps
from schemas.position import format_position

log = logging.getLogger(__name__)

CLOCK_EVERY_S = 0.1  # at most ten clock messages a second: a time bar needs no more


def routes(settings: Settings, auth: Auth) -> list[Route]:
    """The routes, admitting the authority by ``auth`` (the app's ``services.auth``).

    Replay streams are capped in all (``api_max_replays``, 503 over it): each holds a
    Kafka consumer and a fold of its own, far more than a live stream."""
    replays = LiveConnections(
        0, settings.api_max_replays, names=("", "DISPATCHWIRE_API_MAX_REPLAYS")
    )

    async def snapshot_download(request: Request) -> Response:
        auth.require_authority(request)
        target = settings.data_dir / "downloads" / f"{uuid.uuid4().hex}.duckdb"
        try:
            info = await run_in_threadpool(take_snapshot, settings, target)
        except DispatchwireError as exc:
            raise ApiError(503, str(exc)) from exc
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return FileResponse(
            target,
            media_type="application/vnd.duckdb",
            filename=f"dispatchwire-{stamp}.duckdb",
            headers={"X-Log-Position": info.position},
            background=BackgroundTask(target.unlink, missing_ok=True),
        )

    async def replay_stream(request: Request) -> Response:
        auth.require_authority(request)
        window, speed, errors = parse_replay_query(request.query_params)
        clock = request.query_params.get("clock", "0")
        if clock not in ("0", "1"):
            errors.append({"field": "clock", "reason": "1 (send replay_clock messages) or 0"})
        if errors:
            raise ApiError(400, "invalid replay request", errors)
        release = replays.acquire("", "replay")
        try:
            resolved = await run_in_threadpool(LogWindow, settings, window)
        except BaseException as exc:
            release()
            if isinstance(exc, DispatchwireError):
                raise ApiError(503, str(exc)) from exc
            raise
        return HeldStream(
            release,
            _replay_messages(settings, resolved, speed, clock=clock == "1"),
            ping=settings.heartbeat_s,
        )

    return [
        Route("/api/snapshot", snapshot_download, methods=["GET"]),
        Route("/api/replay/stream", replay_stream, methods=["GET"]),
    ]


def _clock_message(timestamp_ms: int) -> dict[str, Any]:
    iso = datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    return {"event": "replay_clock", "data": dumps({"time": iso, "time_ms": timestamp_ms})}


async def _replay_messages(
    settings: Settings, window: LogWindow, speed: float | None, clock: bool = False
) -> AsyncIterator[dict[str, Any]]:
    start = format_position(window.start)
    state = await run_in_threadpool(fold_until, settings, window.start, window.topic)
    yield {
        "event": "snapshot",
        "id": start,
        "data": dumps(
            {
                **state.as_json(),
                "position": start,
                "replay": {
                    "from": start,
                    "to": format_position(window.stop),
                    "speed": speed,
                    "events": window.size,
                },
            }
        ),
    }
    pacer = Pacer(speed)
    position = list(window.start)  # the next offset per partition, after what was sent
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
            if not event.live:  # a retry's answer (command_repeated): not for dashboards
                continue
            wait = pacer.delay(rec.timestamp)
            if wait:
                await asyncio.sleep(wait)
            sent += 1
            last_ms = rec.timestamp
            if clock and last_ms != clock_ms and time.monotonic() - clock_wall >= CLOCK_EVERY_S:
                clock_ms, clock_wall = last_ms, time.monotonic()
                yield _clock_message(last_ms)
            position[rec.partition] = rec.offset + 1
            yield {
                "event": event.event,
                "id": format_position(position),
                "data": dumps(event.live_data()),
            }
        if clock and last_ms is not None:
            # the bar ends at the last record's time, even if a clock told it just before
            # that record (it would, with the machine slow enough, and then none followed)
            yield _clock_message(last_ms)
        yield {
            "event": "replay_end",
            "id": format_position(window.stop),
            "data": dumps({"position": format_position(window.stop), "events": sent}),
        }
    finally:
        try:
            records.close()
        except ValueError:  # still running in a worker thread; it closes when it returns
            log.debug("replay reader still busy at disconnect")
        else:
            window.close()
