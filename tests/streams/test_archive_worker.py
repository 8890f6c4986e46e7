"""The worker archives closed emergencies by its own timer (issue 16): an event in the log,
a tombstone in the changelog, and a restarted worker does not recover them."""

from __future__ import annotations

import json
from collections.abc import Callable

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from schemas.events import EmergencyArchived
from tests.conftest import WorkerProcess
from tests.streams.helpers import Commands, EventLog, changelog_topic, read_to_end
from tests.streams.world import STATION, World


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
        changelog = read_to_end(settings, changelog_topic(settings))
        tombstones = {r.key.decode() for r in changelog if r.value is None}
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
