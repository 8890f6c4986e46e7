"""Archived emergencies (issue 16) leave the API's live state: 410 Gone with where the
history is, never in /api/state or a snapshot, and a re-published copy of an older event
does not bring one back."""

from __future__ import annotations

from collections.abc import Callable

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from schemas.events import EmergencyArchived
from tests.api.helpers import AUTHORITY, EventLog, RunningApi, SseClient, data
from tests.conftest import WorkerProcess, wait_for
from tests.streams.helpers import Commands
from tests.streams.helpers import EventLog as EventReader
from tests.streams.world import STATION, World


def close_and_archive(log: EventLog, region: str = "north") -> tuple[str, EmergencyArchived]:
    created = log.emergency(region=region)
    return created.emergency.id, log.archive(log.complete(created))


def test_an_archived_emergency_is_410_gone_and_out_of_every_snapshot(
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    event_log: Callable[[Settings], EventLog],
) -> None:
    settings = api_settings()
    log = event_log(settings)
    kept = log.emergency(region="north").emergency.id
    gone, archived = close_and_archive(log)
    api = running_api(settings)

    for headers in ({}, AUTHORITY):  # the tracking view and the dispatcher alike
        response = api.get(f"/api/emergencies/{gone}", headers=headers)
        assert response.status_code == 410, response.text
        body = response.json()
        assert body["fields"] == [
            {"field": "id", "reason": "archived: closed and moved to history"}
        ]
        assert body["emergency_id"] == gone
        assert body["emergency_status"] == "COMPLETED"
        assert body["archived_at"] == archived.live_data()["archived_at"]
        assert body["history"] == ["replay", "duckdb"]
        assert "replay" in body["error"] and "DuckDB" in body["error"]
    assert api.get(f"/api/emergencies/{kept}").status_code == 200
    assert api.get("/api/emergencies/nope").status_code == 404

    state = api.get("/api/state", headers=AUTHORITY).json()
    assert [e["id"] for e in state["emergencies"]] == [kept]
    with SseClient(api) as sse:
        snapshot = sse.next()
        assert snapshot.event == "snapshot"
        assert [e["id"] for e in data(snapshot)["emergencies"]] == [kept]

    # the worker re-publishing the report (a retry) after the archive changes nothing
    model = api.services.model
    read = sum(model.offsets)
    log.versions.pop(gone)
    log.emergency(region="north", emergency_id=gone)
    wait_for(lambda: sum(model.offsets) > read, 10, message="the copy to be read")
    assert api.get(f"/api/emergencies/{gone}").status_code == 410
    assert [e["id"] for e in api.get("/api/state", headers=AUTHORITY).json()["emergencies"]] == [
        kept
    ]


def test_the_worker_archives_and_the_api_follows(
    make_settings: Callable[..., Settings],
    running_worker: Callable[[Settings], WorkerProcess],
    running_api: Callable[..., RunningApi],
) -> None:
    settings = make_settings(archive_after_s=1.0, archive_sweep_s=0.5, tick_seconds=60.0)
    ensure_topics(settings)
    running_worker(settings)
    api = running_api(settings)
    commands, reader = Commands(settings), EventReader(settings)
    try:
        world = World(commands, reader)
        world.register(STATION)
        eid = world.report()
        world.run(world.dispatch(eid))
        assert api.get(f"/api/emergencies/{eid}").status_code == 200
        world.run(world.complete(eid))
        response = wait_for(
            lambda: (r := api.get(f"/api/emergencies/{eid}")).status_code == 410 and r,
            message="the emergency to move to history",
        )
        assert response.json()["emergency_status"] == "COMPLETED"  # type: ignore[union-attr]
        state = api.get("/api/state", headers=AUTHORITY).json()
        assert eid not in {e["id"] for e in state["emergencies"]}
    finally:
        commands.close()
        reader.close()
