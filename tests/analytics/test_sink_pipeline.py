"""The sink's pipeline against the real broker: DuckDB writes one batch while the next is read.

Both cases read a backlog produced in bulk (the benchmark's event mix) and watch the real
``Sink``: its consumer's ``getmany`` is counted and its ``write_batch`` is wrapped, nothing
else is replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import analytics.sink as sink_module
from analytics.sink import Sink
from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from tests.benchmarks.throughput import make_events, produce_bulk
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka


def _backlog(make_settings: Callable[..., Settings], events: int, batch: int) -> Settings:
    settings = make_settings(sink_batch_size=batch, partitions=1)
    ensure_topics(settings)
    produce_bulk(settings.kafka_bootstrap, settings.events_topic, make_events(events))
    return settings


def _count_reads(monkeypatch: pytest.MonkeyPatch, sink: Sink) -> list[int]:
    """``[records read so far]``, kept up to date by the sink's own consumer."""
    assert sink.consumer is not None
    read = [0]
    real_getmany = sink.consumer.getmany

    async def counting_getmany(*args: Any, **kwargs: Any) -> Any:
        polled = await real_getmany(*args, **kwargs)
        read[0] += sum(len(batch) for batch in polled.values())
        return polled

    monkeypatch.setattr(sink.consumer, "getmany", counting_getmany)
    return read


def test_the_next_batch_is_read_while_a_batch_is_written(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One fetch (up to 64 MB) brings the first two batches (~40 MB), so reading the next
    # batch never waits on the network: a write that only starts when the reading loop
    # waits starts after it.
    monkeypatch.setattr(sink_module, "FETCH_BYTES", 64 * 1024 * 1024)
    settings = _backlog(make_settings, events=120_000, batch=40_000)
    sink = Sink(settings)
    sink.open()
    try:
        read = _count_reads(monkeypatch, sink)
        real_write = sink_module.write_batch
        overlaps: list[int] = []

        def watched_write(*args: Any, **kwargs: Any) -> Any:
            if not overlaps:  # the first write: is the next batch read meanwhile?
                before = read[0]
                wait_for(
                    lambda: read[0] > before,
                    timeout=15,
                    message=f"records read while the first batch is written (read {before})",
                )
                overlaps.append(read[0] - before)
            return real_write(*args, **kwargs)

        monkeypatch.setattr(sink_module, "write_batch", watched_write)
        stats = sink.run(until_caught_up=True)
    finally:
        sink.close()
    assert overlaps and overlaps[0] > 0
    assert stats.records == 120_000


def test_the_first_write_starts_before_a_whole_batch_is_fetched(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fetches of 256 KiB (some 500 records each): a batch of 5,000 takes ten of them.
    monkeypatch.setattr(sink_module, "FETCH_BYTES", 256 * 1024)
    settings = _backlog(make_settings, events=10_000, batch=5_000)
    sizes: list[int] = []
    real_write = sink_module.write_batch

    def sized_write(con: Any, topic: str, records: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(records))
        return real_write(con, topic, records, *args, **kwargs)

    monkeypatch.setattr(sink_module, "write_batch", sized_write)
    sink = Sink(settings)
    sink.open()
    try:
        stats = sink.run(until_caught_up=True)
    finally:
        sink.close()
    assert stats.records == sum(sizes) == 10_000
    # written once a fifth of a batch was there, not after waiting for all ten fetches
    assert 1_000 <= sizes[0] < 5_000, sizes
    assert max(sizes) <= 5_000
