"""Throughput: the DuckDB sink against row-by-row ``executemany``, replay of the event log.

The events are a realistic mix, half ``emergency_created`` and half ``unit_location`` (the
live map's steady traffic), after one ``unit_status_update`` per unit, built from templates
made with the real schema classes (so every record decodes like the worker's would).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dispatchwire.settings import Settings
from tests.benchmarks.report import Row

log = logging.getLogger(__name__)

UNITS = 50
# _sink_rows' second Kafka row: a city fleet's mix (1,000 units, one new emergency in 50)
FLEET_UNITS = 1_000
FLEET_EMERGENCY_EVERY = 50
REGION = "bench"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _templates(units_count: int = UNITS) -> tuple[list[bytes], str, str]:
    from schemas.codec import encode
    from schemas.entities import Emergency, EmergencyType, Unit, UnitStatus, UnitType
    from schemas.events import EmergencyCreated, UnitLocation, UnitStatusUpdate

    units = []
    for k in range(units_count):
        unit = Unit(
            id=f"u-{k}",
            callsign=f"A{k}",
            type=UnitType.AMBULANCE,
            region=REGION,
            status=UnitStatus.AVAILABLE,
            lat=60.17,
            lon=24.94,
            station="Central",
            updated_at=T0,
            version=1,
        )
        units.append(
            encode(
                UnitStatusUpdate(
                    event_id=f"reg-{k}:0",
                    command_id=f"reg-{k}",
                    region=REGION,
                    unit_id=unit.id,
                    status=unit.status,
                    unit=unit,
                    occurred_at=T0,
                )
            )
        )
    created = encode(
        EmergencyCreated(
            event_id="CIDXXXX:0",
            command_id="CIDXXXX",
            region=REGION,
            occurred_at=T0,
            emergency=Emergency(
                id="EIDXXXX",
                region=REGION,
                type=EmergencyType.FIRE,
                priority=2,
                lat=60.1699,
                lon=24.9384,
                reported_at=T0,
                description="Smoke from a third-floor window, people inside",
            ),
        )
    ).decode()
    moved = encode(
        UnitLocation(
            event_id="CIDXXXX:0",
            command_id="CIDXXXX",
            region=REGION,
            unit_id="UIDXXXX",
            lat=60.171,
            lon=24.941,
            heading=90.0,
            eta_s=120.0,
            route_index=3,
            version=987654321,
            occurred_at=T0,
        )
    ).decode()
    return units, created, moved


def make_events(n: int, units: int = UNITS, emergency_every: int = 2) -> list[bytes]:
    """``n`` event records (values), in log order: ``units`` units registered, then one new
    emergency in every ``emergency_every`` events and unit moves between them (the bench's
    own mix: half and half over 50 units; a city's fleet: one in 50 over 1,000 units)."""
    registered, created, moved = _templates(units)
    out = list(registered[:n])
    i = moves = 0
    while len(out) < n:
        if i % emergency_every == 0:
            out.append(created.replace("CIDXXXX", f"c-{i}").replace("EIDXXXX", f"e-{i}").encode())
        else:
            out.append(
                moved.replace("CIDXXXX", f"m-{i}")
                .replace("UIDXXXX", f"u-{moves % units}")
                .replace("987654321", str(2 + moves // units))
                .encode()
            )
            moves += 1
        i += 1
    return out


@dataclass
class MemRecord:
    partition: int
    offset: int
    timestamp: int
    value: bytes


async def _produce_bulk(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=1_048_576,
        max_request_size=4_194_304,
        acks=1,
    )
    await producer.start()
    try:
        key = REGION.encode()
        stamp = int(time.time() * 1000)
        pending = []
        batch = producer.create_batch()
        for value in values:
            if batch.append(key=key, value=value, timestamp=stamp) is None:
                pending.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=stamp)
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending = []
        pending.append(await producer.send_batch(batch, topic, partition=0))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def produce_bulk(bootstrap: str, topic: str, values: list[bytes]) -> None:
    asyncio.run(_produce_bulk(bootstrap, topic, values))


def sink_in_memory(values: list[bytes], batch_size: int) -> float:
    """``analytics.tables.write_batch`` over the records, in the sink's batch size."""
    import duckdb

    from analytics.tables import create_tables, write_batch
    from schemas.projection import Projection

    records = [MemRecord(0, i, 1_735_689_600_000 + i, v) for i, v in enumerate(values)]
    con = duckdb.connect(":memory:")
    create_tables(con)
    # one warm-up batch on a throw-away database: first use imports pandas (~2 s)
    scratch = duckdb.connect(":memory:")
    create_tables(scratch)
    write_batch(scratch, "warmup", records[:10], Projection())
    scratch.close()
    projection = Projection()
    started = time.perf_counter()
    for i in range(0, len(records), batch_size):
        write_batch(con, "bench", records[i : i + batch_size], projection)
    elapsed = time.perf_counter() - started
    stored = con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
    con.close()
    if stored != len(values):
        raise RuntimeError(f"the sink stored {stored} of {len(values)} events")
    return len(values) / elapsed


def rowwise_executemany(values: list[bytes], batch_size: int) -> float:
    """The naive peer: the same decode, rows and fold, inserted with ``executemany``."""
    import duckdb

    from analytics.tables import (
        _changed_ids,
        create_tables,
        emergency_row,
        event_row,
        unit_row,
    )
    from schemas.codec import decode_event
    from schemas.projection import Projection

    con = duckdb.connect(":memory:")
    create_tables(con)
    projection = Projection()
    started = time.perf_counter()
    for start in range(0, len(values), batch_size):
        rows, changed_e, changed_u = [], set(), set()
        for offset in range(start, min(start + batch_size, len(values))):
            event = decode_event(values[offset])
            rows.append(
                tuple(
                    event_row(event, 0, offset, 1_735_689_600_000 + offset, values[offset]).values()
                )
            )
            if projection.apply(event):
                e_ids, u_ids = _changed_ids(event)
                changed_e.update(e_ids)
                changed_u.update(u_ids)
        con.execute("BEGIN TRANSACTION")
        con.executemany(f"INSERT INTO events VALUES ({','.join('?' * 16)})", rows)
        for table, ids, to_row, store in (
            ("emergencies", changed_e, emergency_row, projection.emergencies),
            ("units", changed_u, unit_row, projection.units),
        ):
            con.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in ids])
            state = [tuple(to_row(store[i]).values()) for i in ids]
            if state:
                con.executemany(
                    f"INSERT INTO {table} VALUES ({','.join('?' * len(state[0]))})", state
                )
        con.execute(
            "INSERT OR REPLACE INTO sink_offsets VALUES ('bench', 0, ?)",
            [min(start + batch_size, len(values))],
        )
        con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    return len(values) / elapsed


def sink_from_kafka(settings: Settings) -> dict[str, float]:
    """The real ``Sink`` reading the events topic to its end into a DuckDB file: events/s
    to the last commit, events/s including ``close`` (DuckDB's checkpoint of what the WAL
    still holds), and the process CPU per event (both cores' worth, fetch and DuckDB).

    Where that CPU goes: the writer thread's (DuckDB's work on each batch), the fetch
    loop's (this thread: aiokafka's records and the batches' Arrow tables), and the share
    of the run the writer was busy (near 100 %: the writes follow each other, and the
    writer's wall time per event above its CPU is time it waited for a core)."""
    from analytics.sink import Sink

    sink = Sink(settings)
    sink.open()
    closed = False
    try:
        started, cpu = time.perf_counter(), time.process_time()
        loop_cpu = time.thread_time()
        stats = sink.run(until_caught_up=True)
        elapsed, loop_cpu = time.perf_counter() - started, time.thread_time() - loop_cpu
        sink.close()
        closed = True
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
        n = max(stats.records, 1)
        return {
            "records": stats.records,
            "events/s": stats.records / elapsed,
            "events/s incl. close": stats.records / total,
            "cpu us/event": cpu / n * 1e6,
            "writer cpu us/event": stats.write_cpu_s / n * 1e6,
            "writer wall us/event": stats.write_s / n * 1e6,
            "writer busy %": 100 * stats.write_s / elapsed,
            "fetch loop cpu us/event": loop_cpu / n * 1e6,
        }
    finally:
        if not closed:
            sink.close()


async def _raw_read(settings: Settings) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from analytics.sink import FETCH_BYTES

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=FETCH_BYTES,
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.events_topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        n = 0
        while await consumer.position(tp) < end:
            polled = await consumer.getmany(timeout_ms=500, max_records=50_000)
            n += sum(len(batch) for batch in polled.values())
        return n
    finally:
        await consumer.stop()


def raw_read(settings: Settings) -> float:
    """The floor beside the sink: the same records read with the sink's aiokafka settings
    and nothing done with them (records/s)."""
    started = time.perf_counter()
    n = asyncio.run(_raw_read(settings))
    return n / (time.perf_counter() - started)


def replay(settings: Settings, emit_cap: int) -> dict[str, Any]:
    """``analytics.replay``: read the whole log window; then re-emit (the first ``emit_cap``
    records of) it into another topic, as ``dispatchwire replay --speed max`` does."""
    from analytics.logio import LogWindow, Window, produce
    from analytics.replay import paced

    window = LogWindow(settings, Window())
    size = window.size
    started = time.perf_counter()
    n = sum(1 for _ in window.records())
    read_rate = n / (time.perf_counter() - started)
    window = LogWindow(settings, Window(stop={0: min(size, emit_cap)}))
    started = time.perf_counter()
    emitted = produce(settings, settings.topic("bench.replayed"), paced(window.records(), None))
    emit_rate = emitted / (time.perf_counter() - started)
    return {"size": size, "read": n, "read/s": read_rate, "emitted": emitted, "emit/s": emit_rate}


def run(
    bootstrap: str,
    replay_events: int,
    sink_events: int,
    rowwise_events: int,
    emit_cap: int = 50_000,
    want_replay: bool = True,
    want_sink: bool = True,
) -> list[Row]:
    from tests.benchmarks import product

    rows: list[Row] = []
    missing = None if product.has_module("analytics.tables") else "analytics/ has not landed"
    if want_sink:
        if missing:
            rows.append(Row.not_measured("sink ingest", "analytics sink", missing))
        else:
            rows += _sink_rows(bootstrap, sink_events, rowwise_events)
    if want_replay:
        if missing or not product.has_module("analytics.replay"):
            rows.append(
                Row.not_measured(
                    "replay", "analytics.replay", missing or "analytics/replay.py has not landed"
                )
            )
        else:
            rows.append(_replay_row(bootstrap, replay_events, emit_cap))
    return rows


def _sink_rows(bootstrap: str, n: int, n_rowwise: int) -> list[Row]:
    from tests.benchmarks import product

    rows = []
    values = make_events(n)
    batch = product.bench_settings(bootstrap).sink_batch_size
    try:
        rows.append(
            Row(
                "sink ingest",
                "sink write_batch (Arrow), from memory",
                {"events": n, "batch": batch},
                {"events/s": sink_in_memory(values, batch)},
            )
        )
        rows.append(
            Row(
                "sink ingest",
                "row-by-row executemany, from memory (peer)",
                {"events": n_rowwise, "batch": batch},
                {"events/s": rowwise_executemany(values[:n_rowwise], batch)},
            )
        )
    except Exception as exc:
        rows.append(Row.not_measured("sink ingest", "analytics sink", f"run failed: {exc!r}"))
    rows.append(_kafka_row(bootstrap, "dispatchwire sink, Kafka -> DuckDB file", values))
    # the same over a city fleet's mix (what 1,000 units at 1 Hz and 200 reports a minute
    # put into the log); the target is judged on the bench's own mix, above
    fleet = make_events(n, units=FLEET_UNITS, emergency_every=FLEET_EMERGENCY_EVERY)
    rows.append(
        _kafka_row(
            bootstrap, "dispatchwire sink, a fleet's mix (1 emergency in 50, 1,000 units)", fleet
        )
    )
    return rows


def _kafka_row(bootstrap: str, subject: str, values: list[bytes]) -> Row:
    """The real sink over ``values`` produced to a topic of its own, beside the raw read
    floor of the same records (read first, back to back)."""
    from infra.topics import ensure_topics
    from tests.benchmarks import product

    settings = product.bench_settings(bootstrap)
    try:
        ensure_topics(settings)
        produce_bulk(bootstrap, settings.events_topic, values)
        floor = raw_read(settings)
        sink = sink_from_kafka(settings)
        return Row(
            "sink ingest",
            subject,
            {
                "events": int(sink.pop("records")),
                "batch": settings.sink_batch_size,
                "load avg": round(os.getloadavg()[0], 1),
            },
            {**sink, "raw read floor events/s": floor},
        )
    except Exception as exc:
        return Row.not_measured("sink ingest", subject, f"run failed: {exc!r}")
    finally:
        _drop_topics(settings)


def _replay_row(bootstrap: str, n: int, emit_cap: int) -> Row:
    from tests.benchmarks import product

    settings = product.bench_settings(bootstrap)
    try:
        from infra.topics import ensure_topics

        ensure_topics(settings)
        started = time.perf_counter()
        values = make_events(n)
        produce_bulk(bootstrap, settings.events_topic, values)
        log.info("replay: %d events in the log after %.1fs", n, time.perf_counter() - started)
        del values
        result = replay(settings, emit_cap)
    except Exception as exc:
        return Row.not_measured("replay", "analytics.replay", f"run failed: {exc!r}", events=n)
    finally:
        _drop_topics(settings)
    return Row(
        "replay",
        "analytics.replay (LogWindow -> produce)",
        {"events": result["read"], "re-emitted": result["emitted"]},
        {"read events/s": result["read/s"], "re-emit events/s": result["emit/s"]},
        "" if result["read"] == n else f"read {result['read']} of {n}",
    )


def _drop_topics(settings: Settings) -> None:
    with contextlib.suppress(Exception):
        from infra.topics import admin_client

        admin = admin_client(settings)
        try:
            mine = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()
