"""Issue 16: the read model starts from a checkpoint (its state at a log position, in the
compacted ``dispatch.readmodel`` topic), not from the whole log. Fold(checkpoint at P) +
the events after P must equal the fold of the whole log; a checkpoint that cannot be used
is ignored with a log line and the whole log is folded; resume keeps working across it."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from api.checkpoint import KEY, Checkpoint
from dispatchwire.settings import Settings
from infra.topics import admin_client, ensure_readmodel_topic
from schemas.entities import EmergencyStatus, UnitStatus
from schemas.events import (
    EmergencyCreated,
    EmergencyUpdated,
    event_id_for,
)
from schemas.position import Position
from tests.api.helpers import AUTHORITY, EventLog, RunningApi, SseClient, assert_contiguous
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

OFF = {"readmodel_checkpoint_s": 0}  # neither loads nor writes: the whole log, as before


def close(log: EventLog, update: EmergencyUpdated, action: str = "completed") -> EmergencyUpdated:
    """Complete (or cancel) the emergency of ``update``, freeing its unit."""
    e, unit = update.emergency, update.unit
    now = datetime.now(UTC)
    status = EmergencyStatus.COMPLETED if action == "completed" else EmergencyStatus.CANCELLED
    command_id = uuid.uuid4().hex
    event = EmergencyUpdated(
        event_id=event_id_for(command_id, 0),
        command_id=command_id,
        region=e.region,
        action=action,  # type: ignore[arg-type]
        emergency=e.model_copy(
            update={"status": status, "closed_at": now, "version": log._version(e.id)}
        ),
        unit=unit.model_copy(
            update={
                "status": UnitStatus.AVAILABLE,
                "emergency_id": None,
                "version": log._version(unit.id),
            }
        )
        if unit is not None
        else None,
    )
    log.write(event)
    return event


def first_half(log: EventLog) -> dict[str, object]:
    """Creates, dispatches, moves, a completion and an archive, and duplicate copies."""
    u1 = log.unit(region="north", unit_id="u-north").unit
    u2 = log.unit(region="south", unit_id="u-south").unit
    e1 = log.emergency(region="north")
    e2 = log.emergency(region="south")
    e3 = log.emergency(region="north")
    a1 = log.assign(e1, u1)
    log.location("u-north", 60.171)
    moved = log.location("u-north", 60.172)
    closed1 = close(log, a1)
    archived1 = log.archive(closed1)
    log.write(e2)  # a redelivered copy
    log.write(a1)  # a copy of an older update of an archived emergency
    log.write(moved)
    return {"u2": u2, "e1": e1, "e2": e2, "e3": e3, "archived1": archived1}


def second_half(log: EventLog, first: dict[str, object]) -> None:
    """More of every kind, and copies of events from before the checkpoint."""
    e1, e2, e3 = first["e1"], first["e2"], first["e3"]
    assert isinstance(e1, EmergencyCreated) and isinstance(e2, EmergencyCreated)
    assert isinstance(e3, EmergencyCreated)
    a2 = log.assign(e2, first["u2"])  # type: ignore[arg-type]
    log.location("u-south", 59.9, region="south")
    log.archive(close(log, a2))
    log.write(e1)  # re-published report of an emergency archived before the checkpoint
    log.write(first["archived1"])  # and its archive again
    log.write(e2)  # an old copy of one archived after it
    log.emergency(region="south")
    cancelled = EmergencyUpdated(
        event_id="x",
        command_id="x",
        region="north",
        action="cancelled",
        emergency=e3.emergency,
    )
    log.archive(close(log, cancelled, "cancelled"), hours=2.0)
    log.unit(region="north", unit_id="u-late")


def model_state(api: RunningApi) -> dict[str, object]:
    """Everything the fold holds, comparable: the snapshot, the archive in its order."""
    model = api.services.model
    return {
        **json.loads(model.state_text()),
        "archived": [a.model_dump(mode="json") for a in model.projection.archived.values()],
        "archive_order": {
            region: [e for _, e in order]
            for region, order in sorted(model.projection._archive_order.items())
        },
    }


def end_of(settings: Settings) -> Position:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        tps = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
        ends = consumer.end_offsets(tps)
        return Position(ends[tp] for tp in tps)
    finally:
        consumer.close()


def topic_configs(settings: Settings) -> dict[str, str]:
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = admin_client(settings)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, settings.readmodel_topic)
        described = admin.describe_configs([resource])["topic"][settings.readmodel_topic]
    finally:
        admin.close()
    return {name: config["value"] for name, config in described.items()}


def checkpoint_written_at_end(api: RunningApi) -> Position:
    model = api.services.model
    end = end_of(api.settings)
    wait_for(lambda: model.position == end, 30, message="the read model at the log end")
    wait_for(lambda: model.checkpointed == end, 30, message="a checkpoint at the log end")
    return end


def test_a_checkpoint_and_the_events_after_it_fold_to_the_whole_log(
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    event_log: Callable[[Settings], EventLog],
) -> None:
    settings = api_settings(readmodel_checkpoint_s=0.2)
    log = event_log(settings)
    first = first_half(log)
    writer = running_api(settings)
    at = checkpoint_written_at_end(writer)
    writer.stop()
    assert topic_configs(settings)["cleanup.policy"] == "compact"  # the latest is kept
    second_half(log, first)
    end = end_of(settings)
    assert sum(end) > sum(at)

    resumed = running_api(settings)
    full = running_api(settings.model_copy(update=OFF))
    assert resumed.services.model.started_from == at
    assert full.services.model.started_from is None
    assert resumed.get("/readyz").json()["checkpoint"] == ".".join(map(str, at))
    assert "checkpoint" not in full.get("/readyz").json()
    for api in (resumed, full):
        wait_for(lambda api=api: api.services.model.position == end, 30, message="log end")
    assert model_state(resumed) == model_state(full)
    state = model_state(full)
    assert len(state["emergencies"]) == 1 and len(state["archived"]) == 3  # type: ignore[arg-type]
    e1 = first["e1"]
    assert isinstance(e1, EmergencyCreated)
    for api in (resumed, full):
        assert api.get(f"/api/emergencies/{e1.emergency.id}").status_code == 410
        assert (
            api.get("/api/state", headers=AUTHORITY).json()
            == full.get("/api/state", headers=AUTHORITY).json()
        )


def capture(api: RunningApi) -> Checkpoint:
    """A checkpoint of a caught-up, idle read model, as its writer would take it."""
    model = api.services.model
    end = end_of(api.settings)
    wait_for(lambda: model.position == end, 30, message="the read model at the log end")
    return Checkpoint.capture(
        model.projection, api.settings.events_topic, model.offsets, model.last
    )


def put_checkpoint(settings: Settings, raw: bytes) -> None:
    ensure_readmodel_topic(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        producer.send(settings.readmodel_topic, raw, key=KEY).get(15)
    finally:
        producer.close()


def with_fields(raw: bytes, **fields: object) -> bytes:
    return json.dumps({**json.loads(raw), **fields}).encode()


def recreate_events_topic(settings: Settings) -> None:
    admin = admin_client(settings)
    try:
        admin.delete_topics([settings.events_topic])
        wait_for(
            lambda: settings.events_topic not in admin.list_topics(),
            30,
            interval=0.2,
            message="the events topic to be deleted",
        )

        def created() -> bool:
            try:
                admin.create_topics([NewTopic(settings.events_topic, settings.partitions, 1)])
            except TopicAlreadyExistsError:  # still being deleted: try again
                return False
            return True

        wait_for(created, 30, interval=0.5, message="the events topic to be recreated")
    finally:
        admin.close()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("schema", "schema version 999"),
        ("beyond the end", "beyond the log's end"),
        ("below the start", "below the log's start"),
        ("recreated", "is not the one it folded"),
    ],
)
def test_a_checkpoint_that_cannot_be_used_is_ignored_and_the_whole_log_folded(
    case: str,
    reason: str,
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    event_log: Callable[[Settings], EventLog],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = api_settings(readmodel_checkpoint_s=3600)  # loads, writes nothing itself
    log = event_log(settings)
    first = first_half(log)
    folder = running_api(settings.model_copy(update=OFF))
    checkpoint = capture(folder)
    folder.stop()
    raw = checkpoint.encode()
    if case == "schema":
        raw = with_fields(raw, schema=999)
    elif case == "beyond the end":  # the topic was recreated with fewer records
        raw = with_fields(raw, position=[o + 5 for o in checkpoint.position])
    elif case == "below the start":  # retention removed records the checkpoint lacks
        second_half(log, first)
        admin = admin_client(settings)
        try:
            gone = end_of(settings)
            admin.delete_records(
                {TopicPartition(settings.events_topic, p): o for p, o in enumerate(gone)}
            )
        finally:
            admin.close()
        log.unit(region="north", unit_id="u-after")
        log.emergency(region="south")
    else:  # recreated and refilled past the position: same offsets, other records
        recreate_events_topic(settings)
        log.versions.clear()
        second_half(log, first_half(log))
        assert all(e >= o for e, o in zip(end_of(settings), checkpoint.position, strict=True))
    put_checkpoint(settings, raw)

    with caplog.at_level(logging.INFO, logger="api.checkpoint"):
        started = running_api(settings)
    full = running_api(settings.model_copy(update=OFF))
    assert started.services.model.started_from is None
    ignored = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(ignored) == 1 and reason in ignored[0], caplog.text
    end = end_of(settings)
    for api in (started, full):
        wait_for(lambda api=api: api.services.model.position == end, 30, message="log end")
    assert model_state(started) == model_state(full)


def test_a_good_checkpoint_beside_a_bad_one_is_used(
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    event_log: Callable[[Settings], EventLog],
) -> None:
    settings = api_settings(readmodel_checkpoint_s=3600)
    log = event_log(settings)
    first = first_half(log)
    folder = running_api(settings.model_copy(update=OFF))
    good = capture(folder)
    folder.stop()
    put_checkpoint(settings, good.encode())
    # a newer-looking one from an API of another schema: greater position, not usable
    put_checkpoint(settings, with_fields(good.encode(), schema=0))
    second_half(log, first)
    started = running_api(settings)
    full = running_api(settings.model_copy(update=OFF))
    assert started.services.model.started_from == good.position
    end = end_of(settings)
    for api in (started, full):
        wait_for(lambda api=api: api.services.model.position == end, 30, message="log end")
    assert model_state(started) == model_state(full)


def test_resume_across_a_restart_from_a_checkpoint(
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    event_log: Callable[[Settings], EventLog],
) -> None:
    settings = api_settings(readmodel_checkpoint_s=0.2)
    log = event_log(settings)
    first_half(log)
    writer = running_api(settings)
    with SseClient(writer) as client:
        start = client.next()
        log.emergency(region="north")
        before = client.next().id  # a position the checkpoint will be past
        log.emergency(region="south")
        log.emergency(region="north")
        latest = client.take(2)[-1].id
    assert start.event == "snapshot"
    at = checkpoint_written_at_end(writer)  # nothing newer is due: stopping races no write
    assert ".".join(map(str, at)) == latest
    writer.stop()
    for _ in range(2):
        log.emergency(region="south")
    end = ".".join(map(str, end_of(settings)))

    restarted = running_api(settings)
    assert restarted.services.model.started_from == at
    # before the checkpoint (read from Kafka), at it, and past it (from the ring)
    resumes = [(before, 4), (latest, 2)]
    for since, count in resumes:
        with SseClient(restarted, last_event_id=since) as client:
            got = client.take(count)
        assert [e.event for e in got] == ["emergency_created"] * count, since
        assert_contiguous(since, [e.id for e in got])
        assert got[-1].id == end
        if since == latest:
            resumes.append((got[0].id, 1))
    assert len(resumes) == 3


def test_an_unknown_emergency_during_a_bootstrap_is_503_not_404(
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    event_log: Callable[[Settings], EventLog],
) -> None:
    from tests.api.test_bootstrap_resume import BOOTSTRAP_RECORDS, write_unit_moves

    settings = api_settings(partitions=1, **OFF)
    log = event_log(settings)
    log.unit(region="north", unit_id="u-busy")
    write_unit_moves(settings, "u-busy", range(2, BOOTSTRAP_RECORDS + 2))
    later = log.emergency(region="north")  # the last record: a partial model lacks it

    api = running_api(settings, ready=False)
    model = api.services.model
    wait_for(lambda: model.started and model.position[0] > 0, 30, 0.005, "the fold to start")
    during = api.get(f"/api/emergencies/{later.emergency.id}")
    assert not model.ready, "the bootstrap ended first; BOOTSTRAP_RECORDS is too small"
    assert during.status_code == 503, during.text
    assert int(during.headers["retry-after"]) >= 1
    assert "not ready" in during.json()["error"]

    wait_for(lambda: model.ready, 60, message="the read model to be ready")
    assert api.get(f"/api/emergencies/{later.emergency.id}").status_code == 200
    assert api.get("/api/emergencies/nope").status_code == 404


def test_a_stopping_read_model_writes_its_state_as_a_checkpoint(
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    event_log: Callable[[Settings], EventLog],
) -> None:
    # no checkpoint falls due while it runs (an hour, a million events): only the stop's
    settings = api_settings(readmodel_checkpoint_s=3600, readmodel_checkpoint_events=1_000_000)
    log = event_log(settings)
    first_half(log)
    api = running_api(settings)
    end = end_of(settings)
    wait_for(lambda: api.services.model.position == end, 30, message="the read model at the end")
    assert api.services.model.checkpointed is None
    api.stop()

    restarted = running_api(settings)
    assert restarted.services.model.started_from == end  # it folded nothing again
    assert restarted.get("/readyz").json()["checkpoint"] == ".".join(map(str, end))
