"""Issue 16: a retried command is answered from the worker's record. The worker publishes one
``command_repeated`` instead of copies of the events; the read model answers the retry's
request with the recorded events and sends dashboards nothing for it."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from api.outcomes import Outcomes
from schemas.events import (
    CommandRepeated,
    EmergencyUpdated,
    UnitLocation,
)
from streams.seed import seed
from tests.api.helpers import AUTHORITY, SseClient, data
from tests.conftest import wait_for

LAT, LON = 60.1699, 24.9384  # inside the bundled Helsinki extract


def updated(command_id: str) -> EmergencyUpdated:
    return EmergencyUpdated.model_validate(
        {
            "event_id": f"{command_id}:0",
            "command_id": command_id,
            "region": "r",
            "action": "cancelled",
            "emergency": {
                "id": "e1",
                "region": "r",
                "type": "medical",
                "priority": 1,
                "lat": LAT,
                "lon": LON,
                "status": "CANCELLED",
                "reported_at": "2025-01-01T12:00:00Z",
                "version": 2,
            },
        }
    )


def repeated(command_id: str, offset: int) -> CommandRepeated:
    return CommandRepeated(
        event_id=f"{command_id}:repeated-{offset}",
        command_id=command_id,
        region="r",
        command_kind="cancel_emergency",
        event_ids=[f"{command_id}:0"],
    )


def test_a_repeat_answers_the_waiter_with_the_recorded_event() -> None:
    async def run() -> None:
        outcomes = Outcomes()
        original = updated("c-1")
        outcomes.settle(original)
        # a retry does not trust the memory (the id may be another client's): it waits
        waiter = outcomes.expect("c-1", (EmergencyUpdated,), recent=False)
        assert not waiter.done()
        outcomes.settle(repeated("c-1", 7))
        assert waiter.result() is original

    asyncio.run(run())


def test_a_repeat_older_than_the_memory_answers_with_itself() -> None:
    async def run() -> None:
        outcomes = Outcomes(recent=1)
        outcomes.settle(updated("c-1"))
        outcomes.settle(updated("c-2"))  # pushes c-1 out of the memory
        waiter = outcomes.expect("c-1", (EmergencyUpdated,), recent=False)
        repeat = repeated("c-1", 9)
        outcomes.settle(repeat)
        assert waiter.result() is repeat  # api.commands answers it with 202

    asyncio.run(run())


def test_movement_does_not_push_outcomes_out_of_the_memory() -> None:
    async def run() -> None:
        outcomes = Outcomes(recent=2)
        original = updated("c-1")
        outcomes.settle(original)
        for n in range(10):
            outcomes.settle(
                UnitLocation(
                    event_id=f"mv-{n}:0",
                    command_id=f"mv-{n}",
                    region="r",
                    unit_id="u1",
                    lat=LAT,
                    lon=LON,
                    version=n + 2,
                )
            )
        waiter = outcomes.expect("c-1", (EmergencyUpdated,), recent=False)
        outcomes.settle(repeated("c-1", 11))
        assert waiter.result() is original

    asyncio.run(run())


@pytest.mark.kafka
def test_retried_dispatch_answers_each_time_and_dashboards_see_it_once(
    api_settings, running_api, running_worker
):
    settings = api_settings(tick_seconds=60.0, command_timeout_s=20.0)
    running_worker(settings)
    seed(settings)
    api = running_api(settings)
    report = api.post(
        "/api/emergencies", json={"type": "medical", "priority": 1, "lat": LAT, "lon": LON}
    )
    assert report.status_code == 201, report.text
    emergency_id = report.json()["id"]
    with SseClient(api) as dashboard:
        assert dashboard.next().event == "snapshot"
        path = f"/api/emergencies/{emergency_id}/dispatch"
        body = {"command_id": "dsp-retried-1"}
        answers = [api.post(path, json=body, headers=AUTHORITY) for _ in range(5)]
        assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
        first = answers[0].json()
        assert first["action"] == "assigned" and first["event_id"] == "dsp-retried-1:0"
        assert all(a.json() == first for a in answers), "every retry gets the first answer"
        # a later command on the same region proves the stream has passed every retry
        complete = api.post(
            f"/api/emergencies/{emergency_id}/complete",
            json={"command_id": "cmp-after-retries"},
            headers=AUTHORITY,
        )
        assert complete.status_code == 200, complete.text
        seen = dashboard.until(
            lambda m: m.event == "emergency_updated" and data(m)["action"] == "completed"
        )
    copies = [
        m
        for m in seen
        if m.event == "emergency_updated" and data(m)["event_id"] == first["event_id"]
    ]
    assert len(copies) == 1, f"the dashboard got {len(copies)} copies of the dispatch"
    assert not [m for m in seen if m.event == "command_repeated"]


@pytest.mark.kafka
def test_a_retry_whose_answer_the_api_no_longer_remembers_gets_202(
    api_settings, running_api, event_log
):
    settings = api_settings(command_timeout_s=30.0)
    log = event_log(settings)
    created = log.emergency(region="hki-sw")
    api = running_api(settings)
    commands = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    tps = [
        TopicPartition(settings.commands_topic, p)
        for p in sorted(commands.partitions_for_topic(settings.commands_topic))
    ]
    commands.assign(tps)
    commands.seek_to_beginning(*tps)
    answer: list[httpx.Response] = []
    path = f"/api/emergencies/{created.emergency.id}/dispatch"
    post = threading.Thread(
        target=lambda: answer.append(
            api.post(path, json={"command_id": "dsp-long-ago"}, headers=AUTHORITY)
        )
    )
    post.start()
    try:
        # the command is on dispatch.commands, so its request waits (it registers first);
        # the worker answers from a record whose events the API has not kept
        wait_for(
            lambda: any(commands.poll(timeout_ms=200).values()),
            timeout=30,
            message="the retry on dispatch.commands",
        )
        log.write(
            CommandRepeated(
                event_id="dsp-long-ago:repeated-7",
                command_id="dsp-long-ago",
                region="hki-sw",
                command_kind="dispatch_emergency",
                event_ids=["dsp-long-ago:0", "dsp-long-ago:1"],
            )
        )
        post.join(60)
    finally:
        commands.close()
    (response,) = answer
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "command_id": "dsp-long-ago"}
    metrics = api.get("/metrics").text
    assert (
        'dispatchwire_api_commands_total{kind="dispatch_emergency",outcome="repeated"} 1.0'
        in metrics
    )
    assert 'outcome="late"' not in metrics
