"""Owner epochs on the changelog (``streams.epochs``): a restore skips what a fenced worker
wrote after the partition's next owner had taken over.

The regression: the paused-node cluster case once logged a retried dispatch's
``command_repeated`` answer twice with two bodies. A worker whose group lease had run out
had sent its record of the dispatch; the write reached the changelog after the next owner
had read it, decided the dispatch again and published that; the next restore read the late
record last, and the retry, delivered again, was answered from it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
import httpx
import pytest
from faust.types import TP
from kafka import KafkaProducer

from schemas.events import CommandRepeated, EmergencyCreated
from streams.epochs import EPOCH_HEADER, EPOCH_KEY, NO_EPOCH, EpochFence, encode_epoch, epoch_of
from streams.processing import ChangelogTable
from tests.conftest import wait_for
from tests.streams.conftest import fresh_settings
from tests.streams.helpers import Commands, EventLog, changelog_topic, read_to_end
from tests.streams.world import medical_report, new_id

# -- the rule, on the real table class with stand-in changelog events ----------------------


@dataclass
class Message:
    partition: int
    offset: int
    value: bytes | None
    headers: Any


@dataclass
class Event:
    key: str
    value: bytes | None
    message: Message


class Changelog:
    """Changelog records in log order, as a restore hands them to the table."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, key: str, value: bytes | None, epoch: tuple[int, int] | None, partition=0):
        headers = None if epoch is None else [(EPOCH_HEADER, encode_epoch(epoch))]
        offset = sum(1 for e in self.events if e.message.partition == partition)
        self.events.append(Event(key, value, Message(partition, offset, value, headers)))


def table() -> ChangelogTable:
    app = faust.App("owner-epochs-test", broker="kafka://127.0.0.1:1", store="memory://")
    return ChangelogTable(app, name="state", partitions=2, value_type=bytes)


def test_a_late_write_of_an_earlier_owner_is_skipped_and_the_markers_stay_out():
    log = Changelog()
    log.write(EPOCH_KEY, b"1.3", (1, 3))  # the first owner, generation 3
    log.write("e:1", b"first owner's", (1, 3))
    log.write("c:a", b"first owner's record of a", (1, 3))
    log.write(EPOCH_KEY, b"2.5", (2, 5))  # the next owner
    log.write("c:a", b"next owner's record of a", (2, 5))
    log.write("e:1", b"next owner's", (2, 5))
    # the first owner's writes that reached the changelog late: a value and a delete
    log.write("c:a", b"fenced record of a", (1, 3))
    log.write("e:1", None, (1, 3))
    t = table()
    t.apply_changelog_batch(log.events)
    assert dict(t.data) == {"c:a": b"next owner's record of a", "e:1": b"next owner's"}
    assert t.epochs.skipped == 2


def test_a_restore_from_the_start_again_reads_the_same_table():
    log = Changelog()
    log.write("e:1", b"old", (1, 3))
    log.write("e:1", b"new", (2, 4))
    log.write("e:2", b"late", (1, 3))
    t = table()
    t.apply_changelog_batch(log.events)
    t.apply_changelog_batch(log.events[:1])  # a second restore, from offset 0 (one batch...)
    t.apply_changelog_batch(log.events[1:])  # ...and the next)
    assert dict(t.data) == {"e:1": b"new"}
    assert t.epochs.skipped == 2


def test_records_without_an_epoch_are_read_as_before_and_later_ones_follow_them():
    log = Changelog()
    log.write("e:1", b"before epochs", None)
    log.write("e:2", b"before epochs", None)
    log.write("e:1", b"with an epoch", (1, 9))
    t = table()
    t.apply_changelog_batch(log.events)
    assert dict(t.data) == {"e:1": b"with an epoch", "e:2": b"before epochs"}


def test_epochs_are_kept_per_partition():
    log = Changelog()
    log.write("e:1", b"p0", (5, 9), partition=0)
    log.write("e:2", b"p1", (1, 2), partition=1)  # lower, but another partition's bar
    t = table()
    t.apply_changelog_batch(log.events)
    assert dict(t.data) == {"e:1": b"p0", "e:2": b"p1"}


def test_a_taken_epoch_is_above_everything_read_and_taken_and_the_generation_breaks_ties():
    fence = EpochFence()
    log = Changelog()
    log.write("e:1", b"x", (4, 10))
    log.write("e:1", b"late", (3, 8))
    list(fence.admit(log.events))
    assert fence.take(0, 11) == (5, 11)
    assert fence.take(0, 12) == (6, 12)  # taken again (a rebalance, nothing read between)
    assert fence.take(1, 12) == (1, 12)
    # an earlier owner that took the same n (its marker unread) writes late: below the later
    # generation's epoch, so skipped
    tie = Changelog()
    tie.write("e:1", b"the later owner's", (5, 11))
    tie.write("e:1", b"late", (5, 10))
    t = table()
    t.apply_changelog_batch(tie.events)
    assert dict(t.data) == {"e:1": b"the later owner's"}


def test_epoch_headers_read_back_and_unreadable_ones_count_as_none():
    assert epoch_of([(EPOCH_HEADER, encode_epoch((7, 3)))]) == (7, 3)
    assert epoch_of({EPOCH_HEADER: b"7.3"}) == (7, 3)
    assert epoch_of([("other", b"1")]) == NO_EPOCH
    assert epoch_of([(EPOCH_HEADER, b"garbage")]) == NO_EPOCH
    assert epoch_of(None) == NO_EPOCH


@dataclass
class Producer:
    sent: list[tuple[str, bytes, bytes | None, int, Any]] = field(default_factory=list)

    async def send(self, topic, key, value, partition, timestamp, headers) -> asyncio.Future:
        self.sent.append((topic, key, value, partition, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_the_owner_marks_its_epoch_then_stamps_every_write_with_it():
    t = table()
    producer = Producer()
    t.app.producer = producer  # type: ignore[assignment]
    t.app.consumer_generation_id = 7
    log = Changelog()
    log.write("e:1", b"x", (2, 4), partition=1)
    t.apply_changelog_batch(log.events)
    changelog = t.changelog_topic.get_topic_name()

    async def take_over_and_write() -> None:
        await t.on_recovery_completed({TP(changelog, 1)}, set())
        t.partition = 1
        t["e:2"] = b"y"
        t.partition = None
        await asyncio.gather(*await t.send_unsent())

    asyncio.run(take_over_and_write())
    header = [(EPOCH_HEADER, b"3.7")]
    assert producer.sent == [
        (changelog, json.dumps(EPOCH_KEY).encode(), b"3.7", 1, header),
        (changelog, b'"e:2"', b"y", 1, header),
    ]


def test_the_owner_writes_again_each_key_a_late_write_came_last_on():
    """Compaction keeps a key's last record: without a write after it, a late write would
    outlive the owner's value it was skipped for."""
    log = Changelog()
    log.write("e:1", b"owner's", (2, 5), partition=1)
    log.write("c:a", b"late", (1, 3), partition=1)  # a late write the owner wrote after...
    log.write("c:a", b"owner's record of a", (2, 5), partition=1)  # ...so it is not last
    log.write("e:1", None, (1, 3), partition=1)  # a late delete, last: written again
    log.write("c:b", b"late record of b", (1, 3), partition=1)  # no owner's value: tombstone
    log.write(EPOCH_KEY, b"1.3", (1, 3), partition=1)  # a late marker: the owner's follows
    log.write("e:9", b"owner's", (4, 8), partition=0)
    log.write("e:9", None, (3, 7), partition=0)  # a partition it reads as a standby
    t = table()
    producer = Producer()
    t.app.producer = producer  # type: ignore[assignment]
    t.app.consumer_generation_id = 7
    t.apply_changelog_batch(log.events)
    assert dict(t.data) == {"e:1": b"owner's", "c:a": b"owner's record of a", "e:9": b"owner's"}
    changelog = t.changelog_topic.get_topic_name()
    asyncio.run(t.on_recovery_completed({TP(changelog, 1)}, {TP(changelog, 0)}))
    header = [(EPOCH_HEADER, b"3.7")]
    assert producer.sent == [
        (changelog, json.dumps(EPOCH_KEY).encode(), b"3.7", 1, header),
        (changelog, b'"c:b"', None, 1, header),
        (changelog, b'"e:1"', b"owner's", 1, header),
    ]
    assert t.epochs.rewritten == 2 and t.epochs.late_keys == {0: {"e:9"}}
    # what compaction keeps of the owned partition (each key's last record, in log order),
    # read by a later restore, is the owner's table
    written = log.events + [
        Event(json.loads(key), value, Message(1, 100 + n, value, headers))
        for n, (_, key, value, _, headers) in enumerate(producer.sent)
    ]
    last = {e.key: e for e in written if e.message.partition == 1}
    later = table()
    later.apply_changelog_batch(sorted(last.values(), key=lambda e: e.message.offset))
    assert dict(later.data) == {"e:1": b"owner's", "c:a": b"owner's record of a"}
    assert later.epochs.skipped == 0


# -- the real worker, broker and recovery -------------------------------------------------


@pytest.mark.kafka
def test_a_restored_worker_skips_a_fenced_owners_late_deletes(
    kafka_bootstrap, tmp_path, running_worker
):
    settings = fresh_settings(kafka_bootstrap, tmp_path, tick_seconds=60.0)
    worker = running_worker(settings)
    commands, log = Commands(settings), EventLog(settings)
    topic = changelog_topic(settings)
    try:
        report = medical_report(command_id=new_id("rep"), region=new_id("case"))
        commands.send(report)
        (created,) = log.wait_command(report.command_id)
        assert isinstance(created, EmergencyCreated)
        keys = {f"e:{created.emergency.id}", f"c:{report.command_id}"}
        changelog = read_to_end(settings, topic)
        written = [r for r in changelog if json.loads(r.key) in keys]
        assert len(written) == 2
        partition = written[0].partition
        epoch = epoch_of(written[0].headers)
        assert epoch > NO_EPOCH and {epoch_of(r.headers) for r in written} == {epoch}
        markers = [
            epoch_of(r.headers)
            for r in changelog
            if json.loads(r.key) == EPOCH_KEY and r.partition == partition
        ]
        assert markers and markers[-1] == epoch  # marked before the partition's writes

        # Writes of the partition's previous owner reaching the changelog late (deletes of
        # both keys): a restore must not apply them over the owner's writes.
        late = [(EPOCH_HEADER, encode_epoch((epoch[0] - 1, epoch[1])))]
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        try:
            for key in sorted(keys):
                producer.send(
                    topic,
                    key=json.dumps(key).encode(),
                    value=None,
                    partition=partition,
                    headers=late,
                )
            producer.flush()
        finally:
            producer.close()

        worker.restart()  # recovers the table from the changelog alone
        assert worker.state() == log.projection().as_json()
        batches = httpx.get(f"{worker.url}/dispatch/batches/", timeout=10.0).json()
        assert batches["late_writes_skipped"] == 2
        assert batches["late_keys_rewritten"] == 2
        # the record is there too: a retry is answered from it, not decided again
        commands.send(report.model_copy(update={"issued_at": datetime.now(UTC)}))
        repeat = log.wait_command(report.command_id, count=2)[1]
        assert isinstance(repeat, CommandRepeated) and repeat.event_ids == [created.event_id]
        markers = [
            epoch_of(r.headers)
            for r in read_to_end(settings, topic)
            if json.loads(r.key) == EPOCH_KEY and r.partition == partition
        ]
        assert markers[-1] > epoch  # the restarted worker took a higher epoch
        # and wrote both keys again after the late deletes: the last record of each, which
        # is what compaction keeps, is its value again
        values = {json.loads(r.key): r.value for r in written}

        def rewritten() -> dict[str, Any]:
            last = {json.loads(r.key): r for r in read_to_end(settings, topic)}
            owners = all(epoch_of(last[key].headers) == markers[-1] for key in keys)
            return last if owners else {}

        last = wait_for(rewritten, timeout=30, interval=0.2, message="the keys written again")
        assert {key: last[key].value for key in keys} == values  # type: ignore[index]
    finally:
        commands.close()
        log.close()
