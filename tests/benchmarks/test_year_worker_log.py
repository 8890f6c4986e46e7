"""The compressed year's in-process worker (``tests.benchmarks.year --worker``) writes what
the worker would have: a real worker cold-started on it recovers the same table and starts
after the history (issue 16, part 1)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from kafka import TopicPartition

from dispatchwire.settings import Settings
from infra.clients import consumer as kafka_consumer
from infra.kafka import free_port
from streams.state import DispatchState
from tests.benchmarks import product, year
from tests.benchmarks.e2e import wait_worker_ready
from tests.streams.helpers import read_to_end


def test_a_cold_worker_recovers_the_generated_changelog(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        partitions=4,
        worker_web_port=free_port(),
        archive_sweep_s=1e6,
        tick_seconds=1e6,
        command_record_sweep_s=1e6,
        command_record_window_s=3_600.0,  # so the simulated sweeps expire some records
    )
    year.create_compacted_topics(settings)
    year.create_topics(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=4)
    traffic = year.CompressedTime(start, per_day=1_000)
    generated = year.WorkerLog(year.deciding_settings(settings))
    generated.write(itertools.chain(traffic.fleet(), traffic.until(now)))
    table = generated.table
    records = sum(1 for key in table if key.startswith("c:"))
    tombstones = [
        r for r in read_to_end(settings, year.changelog_topic(settings)) if r.value is None
    ]
    assert tombstones, "the simulated expire_records and archive sweeps deleted nothing"
    assert any(key.startswith("a:") for key in table), "nothing was archived"

    consumer = kafka_consumer(settings, group_id=settings.app_id, enable_auto_commit=False)
    try:
        tps = [TopicPartition(settings.commands_topic, p) for p in range(settings.partitions)]
        ends = consumer.end_offsets(tps)
        assert {tp: consumer.committed(tp) for tp in tps} == ends  # the worker starts at the end
    finally:
        consumer.close()

    port = settings.worker_web_port
    with product.worker(settings, None, name="year-worker-log-test") as worker:
        wait_worker_ready(port, worker, timeout=120)
        state = httpx.get(f"http://127.0.0.1:{port}/dispatch/state/", timeout=10).json()
        recovered = httpx.get(f"http://127.0.0.1:{port}/dispatch/records/", timeout=10).json()
    assert state == generated.state.snapshot()
    assert state["emergencies"] and len(state["units"]) == len(traffic.units)
    assert recovered == {"command_records": records}

    # the generator's faster record sweep deletes what the worker's own would
    plain = dict(table)
    cutoff = now.timestamp()
    want = DispatchState(plain).expire_records(0, cutoff, generated.partition_of)
    got = generated.state.expire_records(0, cutoff, generated.partition_of)
    assert got == want > 0
    assert dict(table) == plain
