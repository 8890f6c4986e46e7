"""Fixtures of the security suite (issue 11): the real API, with and without the worker.

Module-scoped where the cases only read (the auth matrix, the malformed-input table): one
API serves a whole table. ``stack`` adds a real ``dispatchwire worker`` and the seeded
fleet, for the cases that need a decision (command ids, unit tokens, schemathesis).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from tests.api.helpers import RunningApi
from tests.conftest import WorkerProcess, wait_for

# Timeouts generous enough for a shared 2-core machine: a late outcome (202) is not what
# these tests are about.
SECURITY_SETTINGS = {
    "heartbeat_s": 0.5,
    "retry_ms": 500,
    "command_timeout_s": 30.0,
    "report_rate_per_minute": 100_000,
    "partitions": 2,
}

AUTHORITY = {"Authorization": "Bearer dev-authority"}


def new_settings(kafka_bootstrap: str, folder: Path, **overrides: object) -> Settings:
    """Settings with topics and a Faust app id of their own, the topics created."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        **SECURITY_SETTINGS,
        "kafka_bootstrap": kafka_bootstrap,
        "topic_prefix": f"t{tag}.",
        "app_id": f"dw-sec-{tag}",
        "data_dir": folder / f"data-{tag}",
        "sink_db": folder / f"data-{tag}" / "sink.duckdb",
        **overrides,
    }
    settings = Settings(**values)  # type: ignore[arg-type]
    ensure_topics(settings)
    return settings


@pytest.fixture
def secure_settings(kafka_bootstrap: str, tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: object) -> Settings:
        return new_settings(kafka_bootstrap, tmp_path, **overrides)

    return factory


@pytest.fixture
def start_api() -> Iterator[Callable[[Settings], RunningApi]]:
    """Factory: the real API (uvicorn in a thread) for some settings; stopped at the end."""
    started: list[RunningApi] = []

    def factory(settings: Settings) -> RunningApi:
        api = RunningApi(settings)
        started.append(api)
        return api.start()

    yield factory
    for api in started:
        if api.thread.is_alive():
            api.stop()


@pytest.fixture(scope="module")
def module_api(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """One API without a worker for a module's table of cases (nothing it answers needs a
    decision: refusals happen before a command is written)."""
    settings = new_settings(
        kafka_bootstrap, tmp_path_factory.mktemp("sec-api"), command_timeout_s=2.0
    )
    api = RunningApi(settings).start()
    yield api
    api.stop()


def write_emergency(
    settings: Settings,
    reporter: dict[str, str] | None = None,
    region: str = "hki-ne",
    command_id: str | None = None,
) -> str:
    """An emergency written to the events topic the way the worker writes it; its id."""
    from datetime import UTC, datetime

    from schemas.entities import Emergency, EmergencyType, Reporter
    from schemas.events import EmergencyCreated, event_id_for
    from tests.api.helpers import EventLog

    log = EventLog(settings)
    try:
        command_id = command_id or uuid.uuid4().hex
        emergency = Emergency(
            id=uuid.uuid4().hex,
            region=region,
            type=EmergencyType.MEDICAL,
            priority=2,
            lat=60.17,
            lon=24.94,
            description="fell down",
            reporter=Reporter(**reporter) if reporter else None,
            reported_at=datetime.now(UTC),
        )
        log.write(
            EmergencyCreated(
                event_id=event_id_for(command_id, 0),
                command_id=command_id,
                region=region,
                emergency=emergency,
            )
        )
    finally:
        log.close()
    return emergency.id


def wait_in_read_model(api: RunningApi, emergency_id: str) -> str:
    projection = api.services.model.projection
    wait_for(lambda: emergency_id in projection.emergencies, 30, message="the emergency")
    return emergency_id


def create_sink_database(settings: Settings) -> None:
    """An empty sink database, as ``dispatchwire sink`` leaves it before the first event,
    so ``/api/snapshot`` has something to copy."""
    import duckdb

    from analytics.tables import create_tables

    settings.sink_db.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.sink_db))
    try:
        create_tables(con)
    finally:
        con.close()


class Stack:
    """Worker + seeded fleet + API on topics of their own."""

    def __init__(
        self, settings: Settings, worker: WorkerProcess, api: RunningApi, units: list
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.api = api
        self.units = units

    @property
    def url(self) -> str:
        return self.api.url

    def report(self, body: dict, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.api.post("/api/emergencies", json=body, headers=headers or {})


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from streams.seed import seed

    folder = tmp_path_factory.mktemp("sec-stack")
    settings = new_settings(kafka_bootstrap, folder)
    create_sink_database(settings)
    worker = WorkerProcess(settings, folder / "worker.log").start()
    try:
        units = seed(settings)
        api = RunningApi(settings).start()
        try:
            wait_for(
                lambda: len(api.services.model.projection.units) == len(units),
                60,
                message="the seeded fleet in the read model",
            )
            yield Stack(settings, worker, api, units)
        finally:
            api.stop()
    finally:
        worker.kill()
