"""The worker archives closed emergencies by its own timer (issue 16): an event in the log,
a tombstone in the changelog, and a restarted worker does not recover them."""

from __future__ import annotations

import json
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from schemas.events import EmergencyArchived
from streams.state import TABLE_NAME
from tests.conftest import WorkerProcess
from tests.streams.helpers import Commands, EventLog
from tests.streams.world import STATION, World


def changelog(settings: Settings) -> list[tuple[str, bytes | None]]:
    topic = f"{settings.app_id}-{TABLE_NAME}-changelog"
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[tuple[str, bytes | None]] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                records += [(r.key.decode(), r.value) for r in batch]
        return records
    finally:
        consumer.close()


def test_the_timer_archives_closed_emergencies_and_a_restart_does_not_recover_them(
    make_settings: Callable[..., Settings],
    running_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings(archive_after_s=1.0, archive_sweep_s=0.5, tick_seconds=60.0)
    ensure_topics(settings)
    worker = running_worker(settings)
    commands, log = Commands(settings), EventLog(settings)
    try:
        world = World(commands, log)
        unit = world.register(STATION)
        done = world.report()
        world.run(world.dispatch(done))
        world.run(world.complete(done))
        still_open = world.report()

        archived = log.wait(
            lambda e: isinstance(e, EmergencyArchived) and e.emergency_id == done,
            message="the emergency_archived event",
        )
        assert len(archived) == 1
        assert archived[0].region == world.region
        state = worker.state()
        ids = {e["id"] for e in state["emergencies"]}
        assert done not in ids and still_open in ids
        assert unit in {u["id"] for u in state["units"]}
        tombstones = {key for key, value in changelog(settings) if value is None}
        assert json.dumps(f"e:{done}") in tombstones  # keys are JSON text

        worker.kill()
        worker.start()
        state = worker.state()
        assert {e["id"] for e in state["emergencies"]} == {still_open}
        assert unit in {u["id"] for u in state["units"]}
        # the open one is never archived, however often the timer runs
        assert not [
            e for e in log.poll() if isinstance(e, EmergencyArchived) and e.emergency_id != done
        ]
    finally:
        commands.close()
        log.close()
