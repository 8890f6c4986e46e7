"""JSON Lines: a window of the log to a file (``export``), a file to a topic (``import``).

A file holds one event per line, the record value byte for byte, partitions merged in time
order, so it can be imported at speed xN (``analytics.replay.Pacer``). A file is input from
outside: every line is checked against the event schema before anything of its chunk is
sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

from analytics.logio import (
    LogRecord,
    NoProgress,
    Progress,
    Record,
    ReplayStats,
    TopicWriter,
    Window,
    WindowReader,
    epoch_ms,
    run_sync,
)
from analytics.replay import write_batches
from dispatchwire.errors import ValidationFailed
from dispatchwire.settings import Settings
from infra.topics import ensure_topic_like
from schemas import SchemaError, decode_event

FILE_CHUNK_BYTES = 4 << 20  # JSON Lines read and written in chunks this large


def _jsonl_chunk(records: list[LogRecord], topic: str) -> bytes:
    data = b"\n".join([r.value for r in records]) + b"\n"
    if data.count(b"\n") != len(records):  # one line per record, or the file is wrong
        bad = next(r for r in records if b"\n" in r.value)
        raise ValidationFailed(
            [
                {
                    "field": f"{topic}:{bad.partition}:{bad.offset}",
                    "reason": "the record value holds a newline; JSON Lines needs compact JSON",
                }
            ]
        )
    return data


async def _export(
    settings: Settings, window: Window, out: BinaryIO, topic: str | None, progress: Progress
) -> int:
    n = 0
    async with WindowReader(settings, window, topic) as reader:
        progress.start(reader.size)
        while (merged := await reader.next_merged()) is not None:
            out.write(_jsonl_chunk(merged, reader.topic))
            n += len(merged)
            progress.advance(len(merged))
    return n


def export_to_file(
    settings: Settings,
    window: Window,
    path: Path,
    *,
    topic: str | None = None,
    progress: Progress | None = None,
) -> ReplayStats:
    """Write a window as JSON Lines: one event per line, the record value byte for byte,
    partitions merged in time order (so the file can be imported at speed xN)."""
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb", buffering=FILE_CHUNK_BYTES) as out:
        n = run_sync(_export(settings, window, out, topic, progress or NoProgress()))
    return ReplayStats(n, time.monotonic() - started)


def _parse_lines(path: Path, first_lineno: int, lines: list[bytes], timed: bool) -> list[Record]:
    """Events of JSON Lines as records (key = region; timestamp = event time if ``timed``,
    else 0), each checked against the schema: a file is input from outside."""
    records = []
    for lineno, line in enumerate(lines, first_lineno):
        value = line.rstrip(b"\n")
        if not value.strip():
            continue
        try:
            event = decode_event(value)
        except SchemaError as exc:
            raise ValidationFailed(
                [
                    {"field": f"{path.name}:{lineno}.{e['field']}", "reason": e["reason"]}
                    for e in exc.errors
                ]
            ) from exc
        stamp = epoch_ms(event.occurred_at) if timed else 0
        records.append(Record(-1, lineno, stamp, event.region.encode(), value))
    return records


def _jsonl_chunks(path: Path, timed: bool = True) -> Iterator[list[Record]]:
    with path.open("rb", buffering=FILE_CHUNK_BYTES) as f:
        lineno = 1
        while lines := f.readlines(FILE_CHUNK_BYTES):
            yield _parse_lines(path, lineno, lines, timed)
            lineno += len(lines)


async def _import(
    settings: Settings, path: Path, topic: str, speed: float | None, progress: Progress
) -> int:
    progress.start(None)

    async def chunks() -> AsyncIterator[list[Record]]:
        for records in _jsonl_chunks(path, timed=bool(speed)):
            yield records

    async with TopicWriter(settings, topic) as writer:
        return await write_batches(writer, chunks(), speed, False, progress)


def import_from_file(
    settings: Settings,
    path: Path,
    topic: str,
    *,
    speed: float | None = None,
    progress: Progress | None = None,
) -> ReplayStats:
    """Send the events of a JSON Lines file to ``topic`` keyed by region, in file order per
    region, as fast as possible or at speed xN of the events' times. A line that is not an
    event stops the import before anything of its chunk is sent."""
    ensure_topic_like(settings, topic)
    started = time.monotonic()
    n = run_sync(_import(settings, path, topic, speed, progress or NoProgress()))
    return ReplayStats(n, time.monotonic() - started)
