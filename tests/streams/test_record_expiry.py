"""Issue 16: command records (the idempotency memory) expire after
``Settings.command_record_window_s``, by an ``expire_records`` command through the log, as
deletes (tombstones) in the table's compacted changelog; a restarted worker recovers the
live entries only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from dispatchwire.settings import Settings
from schemas import ReportEmergency, encode
from schemas.commands import ExpireRecords
from schemas.events import CommandRejectedEvent, CommandRepeated, EmergencyCreated
from schemas.geo import load_network
from streams.decisions import Outcome
from streams.processing import decide_command
from streams.routing import GraphRouter
from streams.state import DispatchState, record_text
from tests.conftest import WorkerProcess, wait_for
from tests.streams.conftest import fresh_settings
from tests.streams.helpers import Commands, EventLog, changelog_topic, read_to_end
from tests.streams.kafka_offsets import set_topic_config
from tests.streams.world import medical_report, new_id

ROUTER = GraphRouter(load_network())
AT = 1_735_732_800.0  # 2025-01-01 12:00 UTC
HOUR = 3600.0


def report(command_id: str, region: str = "r") -> ReportEmergency:
    return medical_report(command_id=command_id, region=region)


def sweep(cutoff: float) -> bytes:
    return encode(ExpireRecords(region="r", cutoff=datetime.fromtimestamp(cutoff, UTC)))


# -- the rule, against a dict-backed table ------------------------------------------------


def test_a_sweep_deletes_its_partitions_records_older_than_the_cutoff_only():
    state = DispatchState({})
    decide_command(state, ROUTER, 1.0, encode(report("old")), AT, (0, 1))
    decide_command(state, ROUTER, 1.0, encode(report("new")), AT + 2 * HOUR, (0, 2))
    decide_command(state, ROUTER, 1.0, encode(report("other", "r2")), AT, (1, 1))
    entities = {k: v for k, v in state.table.items() if not k.startswith("c:")}
    decide_command(state, ROUTER, 1.0, sweep(AT + HOUR), AT + 3 * HOUR, (0, 3))
    assert sorted(k for k in state.table if k.startswith("c:")) == ["c:new", "c:other"]
    assert {k: v for k, v in state.table.items() if not k.startswith("c:")} == entities
    # the other partition's own sweep takes its record; a sweep replayed deletes nothing more
    decide_command(state, ROUTER, 1.0, sweep(AT + HOUR), AT + 3 * HOUR, (1, 2))
    decide_command(state, ROUTER, 1.0, sweep(AT + HOUR), AT + 3 * HOUR, (0, 3))
    assert sorted(k for k in state.table if k.startswith("c:")) == ["c:new"]


def test_a_record_written_before_source_and_time_existed_expires_by_its_first_event():
    state = DispatchState({})
    first = decide_command(state, ROUTER, 1.0, encode(report("legacy")), AT, (0, 1))
    assert first is not None
    # the record as the previous version wrote it: command id, fingerprint, outcome
    head = state.table["c:legacy"]
    fingerprint = json.loads(head)["fingerprint"]
    state.table["c:legacy"] = record_text("legacy", Outcome(events=first.events), fingerprint)
    assert '"source"' not in state.table["c:legacy"]

    def placed(region: str) -> int:
        return {"r": 1}[region]

    # a retry still finds it (and, not knowing its message, re-publishes, as before)
    again = decide_command(state, ROUTER, 1.0, encode(report("legacy")), AT + 5, (1, 9))
    assert again is not None and again.events == first.events
    source = (0, 4)  # a sweep of partition 0 leaves it: its region is placed on 1
    decide_command(state, ROUTER, 1.0, sweep(AT + HOUR), AT + HOUR, source, placed)
    assert "c:legacy" in state.table
    decide_command(state, ROUTER, 1.0, sweep(AT + HOUR), AT + HOUR, (1, 10), placed)
    assert "c:legacy" not in state.table


def test_inside_the_window_a_retry_is_answered_after_it_is_decided_as_new():
    state = DispatchState({})
    first = decide_command(state, ROUTER, 1.0, encode(report("rep-1")), AT, (0, 1))
    assert first is not None and isinstance(first.events[0], EmergencyCreated)
    emergency = state.emergency(first.events[0].emergency.id)
    inside = decide_command(state, ROUTER, 1.0, encode(report("rep-1")), AT + 60, (0, 5))
    assert inside is not None and isinstance(inside.events[0], CommandRepeated)
    decide_command(state, ROUTER, 1.0, sweep(AT + HOUR), AT + 2 * HOUR, (0, 6))
    after = decide_command(state, ROUTER, 1.0, encode(report("rep-1")), AT + 2 * HOUR, (0, 7))
    # decided against the state now: the report's emergency exists, so it is refused
    assert after is not None and isinstance(after.events[0], CommandRejectedEvent)
    assert "already reported" in after.events[0].reason
    assert state.emergency(emergency.id) == emergency  # no second effect


# -- the real worker and broker -----------------------------------------------------------


def read_changelog(settings: Settings) -> list[tuple[str, bytes | None]]:
    """Every record of the table's changelog from its start: what a recovery reads."""
    return [(json.loads(r.key), r.value) for r in read_to_end(settings, changelog_topic(settings))]


def records_in_worker(worker: WorkerProcess) -> int:
    answer = httpx.get(f"{worker.url}/dispatch/records/", timeout=10.0)
    answer.raise_for_status()
    return answer.json()["command_records"]


@pytest.mark.kafka
def test_the_changelog_is_compacted_and_a_sweep_writes_tombstones(
    kafka_bootstrap, tmp_path, running_worker
):
    settings = fresh_settings(
        kafka_bootstrap,
        tmp_path,
        tick_seconds=60.0,
        command_record_window_s=10.0,
        command_record_sweep_s=0.5,
    )
    worker = running_worker(settings)
    commands, log = Commands(settings), EventLog(settings)
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, changelog_topic(settings))
            configs = admin.describe_configs([resource])["topic"][changelog_topic(settings)]
        finally:
            admin.close()
        assert configs["cleanup.policy"]["value"] == "compact"
        assert configs["segment.ms"]["value"] == str(settings.changelog_segment_ms)
        assert configs["delete.retention.ms"]["value"] == str(
            settings.changelog_delete_retention_ms
        )

        region = new_id("case")
        original = report(new_id("rep"), region)
        commands.send(original)
        (created,) = log.wait_command(original.command_id)
        assert isinstance(created, EmergencyCreated)
        # inside the window (sent right away, well within 10 s): the same answer, no effect
        commands.send(original.model_copy(update={"issued_at": datetime.now(UTC)}))
        repeat = log.wait_command(original.command_id, count=2)[1]
        assert isinstance(repeat, CommandRepeated) and repeat.event_ids == [created.event_id]

        # after the window the sweep deletes the record: a tombstone in the changelog
        key = f"c:{original.command_id}"

        def tombstoned() -> bool:
            return (key, None) in read_changelog(settings)

        wait_for(tombstoned, timeout=60, interval=0.5, message=f"a tombstone for {key}")
        assert records_in_worker(worker) == 0
        # now a retry is decided as a new command: the emergency exists, so it is refused
        commands.send(original.model_copy(update={"issued_at": datetime.now(UTC)}))
        late = log.wait_command(original.command_id, count=3)[2]
        assert isinstance(late, CommandRejectedEvent), late
        assert "already reported" in late.reason
        emergencies = [e for e in worker.state()["emergencies"] if e["id"] == created.emergency.id]
        assert [e["version"] for e in emergencies] == [1]
    finally:
        commands.close()
        log.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_a_restarted_worker_recovers_only_live_entries(kafka_bootstrap, tmp_path, running_worker):
    settings = fresh_settings(
        kafka_bootstrap,
        tmp_path,
        tick_seconds=60.0,
        command_record_window_s=2.0,
        command_record_sweep_s=0.5,
        changelog_segment_ms=500,
        changelog_delete_retention_ms=0,
    )
    worker = running_worker(settings)
    # the broker's cleaner compacts a log once this share of it is dirty (default 0.5);
    # a test log is tiny, so let every pass count
    set_topic_config(settings, changelog_topic(settings), min_cleanable_dirty_ratio="0.01")
    commands, log = Commands(settings), EventLog(settings)
    try:
        region = new_id("case")
        reports = [report(new_id("rep"), region) for _ in range(40)]
        commands.send_all(reports)
        log.wait_command(reports[-1].command_id)
        swept = {f"c:{r.command_id}" for r in reports}
        before = read_changelog(settings)
        wait_for(lambda: records_in_worker(worker) == 0, timeout=60, message="the sweep")
        after_sweep = read_changelog(settings)
        assert {k for k, v in after_sweep if v is None} >= swept  # tombstones written

        # the cleaner only compacts closed segments: keep appending (one command a second
        # rolls a 500 ms segment) until no swept record, and no tombstone, is left to read
        def compacted() -> bool:
            commands.send(report(new_id("roll"), region))
            keys = {k for k, _ in read_changelog(settings)}
            return not keys & swept

        wait_for(compacted, timeout=120, interval=1.0, message="the changelog compacted")
        live = {k for k, v in read_changelog(settings) if v is not None}
        worker.restart()  # a cold start: the table is recovered from the changelog alone
        state = worker.state()
        read = read_changelog(settings)
        print(
            f"changelog records read by a recovery: {len(before)} before the sweep, "
            f"{len(after_sweep)} after it, {len(read)} once compacted "
            f"({len(live)} live keys then); the worker holds {len(state['emergencies'])} "
            f"emergencies and {records_in_worker(worker)} records"
        )
        # what a recovery reads holds none of the swept records (the rolls above keep
        # adding live ones, so the total is not a measure; the swept keys are)
        assert not {k for k, _ in read} & swept
        assert {e["id"] for e in state["emergencies"]} >= {r.emergency_id for r in reports}
    finally:
        commands.close()
        log.close()
