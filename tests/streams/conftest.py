"""Fixtures for the worker's tests: one worker per module where cases can share it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from schemas.events import UnitLocation
from tests.conftest import WorkerProcess
from tests.streams.helpers import Commands, EventLog


def fresh_settings(bootstrap: str, tmp: Path, **overrides: object) -> Settings:
    tag = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": f"t{tag}.",
        "app_id": f"dw-test-{tag}",
        "data_dir": tmp / f"data-{tag}",
        "partitions": 2,
    }
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def shared_worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One worker for a module's cases; each case uses ids of its own. Movement is slow
    (one tick a minute) so cases see only the events they cause."""
    tmp = tmp_path_factory.mktemp("worker")
    settings = fresh_settings(kafka_bootstrap, tmp, tick_seconds=60.0)
    worker = WorkerProcess(settings, tmp / "worker.log")
    try:
        yield worker.start()
    finally:
        worker.kill()


@pytest.fixture
def commands(request: pytest.FixtureRequest) -> Iterator[Commands]:
    settings = _settings_of(request)
    client = Commands(settings)
    yield client
    client.close()


@pytest.fixture
def event_log(request: pytest.FixtureRequest) -> Iterator[EventLog]:
    log = EventLog(_settings_of(request))
    yield log
    log.close()


def _settings_of(request: pytest.FixtureRequest) -> Settings:
    if "shared_worker" in request.fixturenames:
        return request.getfixturevalue("shared_worker").settings
    return request.getfixturevalue("settings")


@pytest.fixture
def backlog_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """One partition and a slow tick, for a backlog written before ``late_worker`` starts."""
    return fresh_settings(kafka_bootstrap, tmp_path, partitions=1, tick_seconds=60.0)


@pytest.fixture
def late_worker(backlog_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker process, started by the test once its backlog is in the partition."""
    worker = WorkerProcess(backlog_settings, tmp_path / "worker.log")
    try:
        yield worker
    finally:
        worker.kill()


def run_backlog(
    settings: Settings, late_worker: WorkerProcess, backlog: list[Any], last: str
) -> tuple[WorkerProcess, list[Any], list[Any]]:
    """Write ``backlog`` before the worker starts, start it, and read the events topic
    until the event of command ``last`` (a GPS fix's ``unit_location``): the worker, and
    the records and events read."""
    commands = Commands(settings)
    try:
        commands.send_all(backlog)
    finally:
        commands.close()
    worker = late_worker.start()
    events = EventLog(settings)
    try:
        events.wait(
            lambda e: isinstance(e, UnitLocation) and e.command_id == last,
            timeout=120.0,
            message="the last fix's unit_location",
        )
        return worker, list(events.records), list(events.events)
    finally:
        events.close()
