"""The Faust commands agent (with its table) against a raw aiokafka loop doing the same work.

Both get the same pre-produced ``report_emergency`` commands on a topic of their own and run
pinned to the server core; each command costs a decode, two table writes (its record and
the emergency, both to a changelog) and one ``emergency_created`` event. The rate is taken
from the Kafka timestamps of the first and last event each wrote, so start-up is not in it.

The worker's CPU per command (user + system, ``/proc``, read when its first and when its
last event arrived) is measured for reports and, in a third row, for GPS fixes
(``unit_position`` with lat/lon, as ``dispatchwire simulate`` sends them: issue 16), each
fix one ``unit_location`` event, after up to ``FIX_UNITS`` ``register_unit`` commands (one
event each) that count among the row's commands.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from dispatchwire.settings import Settings
from tests.benchmarks import product
from tests.benchmarks.procs import PYTHON, SERVER_CORE, running
from tests.benchmarks.report import Row
from tests.benchmarks.scale import _cpu_s
from tests.benchmarks.throughput import _drop_topics, produce_bulk

BENCH = "commands agent"
FIX_UNITS = 100


def make_commands(n: int) -> list[bytes]:
    from schemas.codec import encode
    from schemas.commands import ReportEmergency
    from schemas.entities import EmergencyType

    template = encode(
        ReportEmergency(
            command_id="CIDXXXX",
            emergency_id="EIDXXXX",
            region="bench",
            type=EmergencyType.FIRE,
            priority=2,
            lat=60.1699,
            lon=24.9384,
            issued_by="reporter",
            description="Smoke from a third-floor window, people inside",
        )
    ).decode()
    return [
        template.replace("CIDXXXX", f"c-{i}").replace("EIDXXXX", f"e-{i}").encode()
        for i in range(n)
    ]


def make_fixes(count: int) -> list[bytes]:
    """``count`` commands: up to ``FIX_UNITS`` units registered, then GPS fixes, round-robin
    over the units, each a little further north and a millisecond later than the one before
    (all applied)."""
    from schemas.codec import encode
    from schemas.commands import RegisterUnit, UnitPosition
    from schemas.entities import UnitType

    units = max(1, min(FIX_UNITS, count // 10))
    n = count - units
    lat, lon = 60.1699, 24.9384
    commands = [
        encode(
            RegisterUnit(
                region="bench",
                unit_id=f"u-{i}",
                callsign=f"U{i}",
                type=UnitType.AMBULANCE,
                lat=lat,
                lon=lon,
            )
        )
        for i in range(units)
    ]
    # A fix older than its unit's state is stale (``streams.decisions``): the fixes are
    # dated after the registrations, which take their time from the produce, a few seconds
    # from now. (A fraction of a second, so that isoformat writes one, as pydantic does.)
    start = datetime.now(UTC).replace(microsecond=500) + timedelta(minutes=10)
    template = encode(
        UnitPosition(
            command_id="CIDXXXX",
            region="bench",
            unit_id="UIDXXXX",
            lat=lat,
            lon=lon,
            issued_by="simulator",
            issued_at=start,
        )
    ).decode()
    issued = f'"issued_at":"{start.isoformat().replace("+00:00", "Z")}"'
    assert issued in template, template
    for i in range(n):
        at = (start + timedelta(milliseconds=i + 1)).isoformat().replace("+00:00", "Z")
        fix = template.replace("CIDXXXX", f"g-{i}").replace("UIDXXXX", f"u-{i % units}")
        fix = fix.replace(issued, f'"issued_at":"{at}"')
        commands.append(fix.replace(f'"lat":{lat}', f'"lat":{lat + 1e-6 * (i + 1):.7f}').encode())
    return commands


async def _event_span(
    settings: Settings, count: int, timeout_s: float, pid: int | None = None
) -> tuple[int, float, float | None]:
    """How many events reached the events topic, the ms between the first and last, and
    the CPU seconds process ``pid`` spent between them (None without a pid)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        max_poll_records=5_000,
    )
    await consumer.start()
    seen, first, last = 0, None, None
    cpu_first = cpu_last = None
    deadline = time.monotonic() + timeout_s
    try:
        while seen < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    first = record.timestamp if first is None else first
                    last = record.timestamp
                    seen += 1
            if pid is not None and seen:
                cpu_last = _cpu_s(pid)
                cpu_first = cpu_last if cpu_first is None else cpu_first
    finally:
        await consumer.stop()
    cpu = cpu_last - cpu_first if cpu_first is not None and cpu_last is not None else None
    return seen, float((last or 0) - (first or 0)), cpu


def _measure(
    subject: str,
    settings: Settings,
    count: int,
    args: list[str],
    commands: list[bytes] | None = None,
) -> Row:
    from infra.topics import ensure_topics

    commands = commands if commands is not None else make_commands(count)
    count = len(commands)
    try:
        ensure_topics(settings)
        produce_bulk(settings.kafka_bootstrap, settings.commands_topic, commands)
        product.LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = product.LOG_DIR / f"{subject.split()[0].lower()}-agent.log"
        with running(args, SERVER_CORE, env=product.env_for(settings), log=log_path) as proc:
            seen, span_ms, cpu_s = asyncio.run(
                _event_span(settings, count, timeout_s=180.0, pid=proc.pid)
            )
    except Exception as exc:
        return Row.not_measured(BENCH, subject, f"run failed: {exc!r}", commands=count)
    finally:
        _drop_topics(settings)
    rate = (seen - 1) / (span_ms / 1000) if seen > 1 and span_ms > 0 else None
    return Row(
        BENCH,
        subject,
        {"commands": count},
        {
            "events": seen,
            "events/s": rate,
            "CPU µs/command": cpu_s / (seen - 1) * 1e6 if cpu_s and seen > 1 else None,
        },
        "" if seen == count else f"only {seen} of {count} events in time",
    )


def run(bootstrap: str, count: int) -> list[Row]:
    why = product.available("worker")
    faust_subject = "Faust agent + table (dispatchwire worker)"
    raw_subject = "raw aiokafka loop, same work (peer)"
    fix_subject = "dispatchwire worker, GPS fixes (unit_position with lat/lon)"
    if why:
        return [
            Row.not_measured(BENCH, faust_subject, why),
            Row.not_measured(BENCH, raw_subject, why),
            Row.not_measured(BENCH, fix_subject, why),
        ]
    return [
        _measure(
            faust_subject,
            product.bench_settings(bootstrap),
            count,
            [product.DISPATCHWIRE, "worker"],
        ),
        _measure(
            raw_subject,
            product.bench_settings(bootstrap),
            count,
            [PYTHON, "-m", "tests.benchmarks.rawloop", str(count)],
        ),
        run_fixes(bootstrap, count, fix_subject),
    ]


def run_fixes(bootstrap: str, count: int, subject: str = "GPS fixes") -> Row:
    """The worker's rate and CPU per command for ``count`` GPS fixes (issue 16)."""
    return _measure(
        subject,
        product.bench_settings(bootstrap),
        count,
        [product.DISPATCHWIRE, "worker"],
        make_fixes(count),
    )
