"""A partition added to the events topic while the sink runs (a new region's) is read too,
without a restart, and nothing read before it is read twice or skipped."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pytest
from kafka.admin import NewPartitions

import analytics.sink as sink_module
from analytics.sink import Sink
from dispatchwire.settings import Settings
from infra import clients
from infra.topics import ensure_topics
from tests.benchmarks.throughput import make_events
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka


def _produce(settings: Settings, partition: int, values: list[bytes]) -> None:
    producer = clients.producer(settings, acks="all")
    try:
        for value in values:
            producer.send(settings.events_topic, value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def _stored(sink: Sink) -> int:
    assert sink.con is not None
    # fetchall: a result left half-read would block the sink's next write on this connection
    return int(sink.con.execute("SELECT count(*) FROM events").fetchall()[0][0])


def test_a_partition_added_while_the_sink_runs_is_read_from_its_start(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "PARTITION_CHECK_S", 0.5)
    settings = make_settings(partitions=1, sink_batch_size=2_000)
    ensure_topics(settings)
    events = make_events(9_000)
    first, later, added = events[:5_000], events[5_000:7_000], events[7_000:]
    _produce(settings, 0, first)

    sink = Sink(settings)
    sink.open()
    try:
        sink.step()  # one batch written, the next read ahead: the add must keep both
        written = _stored(sink)
        assert 0 < written < len(first)
        admin = clients.admin(settings)
        try:
            admin.create_partitions({settings.events_topic: NewPartitions(total_count=2)})
        finally:
            admin.close()
        _produce(settings, 1, added)
        _produce(settings, 0, later)

        def caught_up() -> bool:
            sink.step()
            return _stored(sink) >= len(events)

        wait_for(caught_up, timeout=60, interval=0, message="the new partition's events stored")
        assert sorted(tp.partition for tp in sink.partitions) == [0, 1]
        assert sink.stats.records == len(events)  # every record read once (no copy deduped)
    finally:
        sink.close()

    with duckdb.connect(str(settings.sink_db), read_only=True) as con:
        rows, ids = con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()  # type: ignore[misc]
        per_partition = dict(
            con.execute('SELECT "partition", count(*) FROM events GROUP BY ALL').fetchall()
        )
        offsets = dict(con.execute('SELECT "partition", next_offset FROM sink_offsets').fetchall())
    assert (rows, ids) == (len(events), len(events))
    assert per_partition == {0: len(first) + len(later), 1: len(added)}
    assert offsets == {0: len(first) + len(later), 1: len(added)}

    restarted = Sink(settings)  # resumes at the stored positions of both partitions
    restarted.open()
    try:
        assert restarted.run(until_caught_up=True).records == 0
    finally:
        restarted.close()
