"""The Faust commands agent (with its table) against a raw aiokafka loop doing the same work.

Both get the same pre-produced ``report_emergency`` commands on a topic of their own and run
pinned to the server core; each command costs a decode, two table writes (its record and
the emergency, both to a changelog) and one ``emergency_created`` event. The rate is taken
from the Kafka timestamps of the first and last event each wrote, so start-up is not in it.
"""

from __future__ import annotations

import asyncio
import time

from dispatchwire.settings import Settings
from tests.benchmarks import product
from tests.benchmarks.procs import PYTHON, SERVER_CORE, running
from tests.benchmarks.report import Row
from tests.benchmarks.throughput import _drop_topics, produce_bulk

BENCH = "commands agent"


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


async def _event_span(settings: Settings, count: int, timeout_s: float) -> tuple[int, float]:
    """How many events reached the events topic, and the ms between the first and last."""
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
    deadline = time.monotonic() + timeout_s
    try:
        while seen < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    first = record.timestamp if first is None else first
                    last = record.timestamp
                    seen += 1
    finally:
        await consumer.stop()
    return seen, float((last or 0) - (first or 0))


def _measure(subject: str, settings: Settings, count: int, args: list[str]) -> Row:
    from infra.topics import ensure_topics

    try:
        ensure_topics(settings)
        produce_bulk(settings.kafka_bootstrap, settings.commands_topic, make_commands(count))
        product.LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = product.LOG_DIR / f"{subject.split()[0].lower()}-agent.log"
        with running(args, SERVER_CORE, env=product.env_for(settings), log=log_path):
            seen, span_ms = asyncio.run(_event_span(settings, count, timeout_s=180.0))
    except Exception as exc:
        return Row.not_measured(BENCH, subject, f"run failed: {exc!r}", commands=count)
    finally:
        _drop_topics(settings)
    rate = (seen - 1) / (span_ms / 1000) if seen > 1 and span_ms > 0 else None
    return Row(
        BENCH,
        subject,
        {"commands": count},
        {"events": seen, "events/s": rate},
        "" if seen == count else f"only {seen} of {count} events in time",
    )


def run(bootstrap: str, count: int) -> list[Row]:
    why = product.available("worker")
    faust_subject = "Faust agent + table (dispatchwire worker)"
    raw_subject = "raw aiokafka loop, same work (peer)"
    if why:
        return [
            Row.not_measured(BENCH, faust_subject, why),
            Row.not_measured(BENCH, raw_subject, why),
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
    ]
