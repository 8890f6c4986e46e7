"""Replay: a window of the log re-emitted into a topic, as fast as possible or at speed xN
of the record times (``Pacer``), the fold up to a position (``fold_until``, the state a
replay starts from), and the window a replay is asked for (``parse_replay_query``, for the
CLI and the API's ``/api/replay/stream``). Reading and writing the log is ``logio.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from analytics.logio import (
    LogRecord,
    LogWindow,
    NoProgress,
    Progress,
    ReplayStats,
    TopicWriter,
    Window,
    WindowReader,
    run_sync,
    write_grouped,
)
from dispatchwire.settings import Settings
from infra.topics import ensure_topic_like
from schemas import SchemaError, decode_event
from schemas.position import Position
from schemas.projection import Projection

log = logging.getLogger(__name__)

T = TypeVar("T")


def _parse_time(name: str, text: str, errors: list[dict[str, str]]) -> datetime | None:
    try:
        if text.isascii() and text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):  # OSError: a year the C library refuses
        errors.append({"field": name, "reason": "expected an ISO-8601 time or epoch milliseconds"})
        return None


def parse_replay_query(
    params: Mapping[str, str],
) -> tuple[Window, float | None, list[dict[str, str]]]:
    """Window and speed from the replay's parameters (``from``, ``to``, ``from_position``,
    ``to_position``, ``speed``: a query string or the CLI's flags); the list holds
    field-level errors."""
    errors: list[dict[str, str]] = []
    window: dict[str, Any] = {}
    for name, key in (("from", "start_time"), ("to", "stop_time")):
        if params.get(name):
            window[key] = _parse_time(name, params[name], errors)
    for name, key in (("from_position", "start"), ("to_position", "stop")):
        if params.get(name):
            try:
                window[key] = Position.parse(params[name])
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
            errors.append({"field": "speed", "reason": "a factor between 0 and 100000, or 'max'"})
    start, stop = window.get("start_time"), window.get("stop_time")
    if start and stop and stop <= start:
        errors.append({"field": "to", "reason": "must be after 'from'"})
    return Window(**window), speed, errors


class Pacer:
    """Turns log timestamps into wall-clock delays for speed xN (``None``: no waiting)."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self._origin: tuple[int, float] | None = None

    def delay(self, timestamp_ms: int) -> float:
        if not self.speed:
            return 0.0
        now = time.monotonic()
        if self._origin is None:
            self._origin = (timestamp_ms, now)
            return 0.0
        log_ms, wall = self._origin
        return max(0.0, wall + (timestamp_ms - log_ms) / 1000 / self.speed - now)


def paced(records: Iterable[T], speed: float | None) -> Iterator[T]:
    if not speed:
        yield from records
        return
    pacer = Pacer(speed)
    for rec in records:
        wait = pacer.delay(rec.timestamp)  # type: ignore[attr-defined]
        if wait:
            time.sleep(wait)
        yield rec


async def write_paced(
    writer: TopicWriter, records: Iterable[LogRecord], pacer: Pacer, same_partitions: bool
) -> None:
    for rec in records:
        wait = pacer.delay(rec.timestamp)
        if wait:
            await writer.send_open()
            await asyncio.sleep(wait)
        p = rec.partition if same_partitions else writer.partition_for(rec.key, rec.partition)
        await writer.write(p, (rec,))


async def write_batches(
    writer: TopicWriter,
    batches: AsyncIterator[Sequence[LogRecord]],
    speed: float | None,
    same_partitions: bool,
    progress: Progress,
) -> int:
    """Write ``batches`` (in time order) at speed xN of their record times, or, with no
    speed, each batch grouped by partition as fast as possible; ``same_partitions`` keeps a
    paced record's partition (else its key picks one). Returns the records sent so far."""
    pacer = Pacer(speed)
    async for records in batches:
        if speed:
            await write_paced(writer, records, pacer, same_partitions)
        else:
            await write_grouped(writer, records)
        progress.advance(len(records))
    return writer.sent


async def _merged(reader: WindowReader) -> AsyncIterator[list[LogRecord]]:
    while (merged := await reader.next_merged()) is not None:
        yield merged


async def _replay_to_topic(
    settings: Settings,
    window: Window,
    to_topic: str,
    from_topic: str | None,
    speed: float | None,
    progress: Progress,
) -> int:
    async with WindowReader(settings, window, from_topic) as reader:
        progress.start(reader.size)
        ensure_topic_like(settings, to_topic, reader.partitions)
        async with TopicWriter(settings, to_topic) as writer:
            # Same partition count: keep each record's partition (whatever chose it).
            same = writer.partitions == reader.partitions
            if speed:
                return await write_batches(writer, _merged(reader), speed, same, progress)
            while (chunk := await reader.next_chunk()) is not None:
                for p, records in chunk.items():
                    if same:
                        await writer.write(p, records)
                    else:
                        await write_grouped(writer, records)
                    progress.advance(len(records))
        return writer.sent


def replay_to_topic(
    settings: Settings,
    window: Window,
    to_topic: str,
    *,
    from_topic: str | None = None,
    speed: float | None = None,
    progress: Progress | None = None,
) -> ReplayStats:
    """Re-emit a window of ``from_topic`` (default the events topic) into ``to_topic``,
    as fast as possible (``speed=None``) or at speed xN of the record times."""
    started = time.monotonic()
    n = run_sync(
        _replay_to_topic(settings, window, to_topic, from_topic, speed, progress or NoProgress())
    )
    return ReplayStats(n, time.monotonic() - started)


def fold_until(settings: Settings, position: Position, topic: str | None = None) -> Projection:
    """Current state at ``position``: the fold of every event before it."""
    projection = Projection()
    for rec in LogWindow(settings, Window(stop=position), topic).records():
        try:
            projection.apply(decode_event(rec.value))
        except SchemaError:
            log.warning("skipping undecodable record %d:%d", rec.partition, rec.offset)
    return projection
