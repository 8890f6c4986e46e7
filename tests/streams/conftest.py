"""Fixtures for the worker's tests: one worker per module where cases can share it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
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
