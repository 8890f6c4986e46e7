"""Helpers for the API tests: a real uvicorn server in a thread, real SSE/WS clients,
and events written to the real broker the way the worker writes them."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from httpx_sse import ServerSentEvent, connect_sse
from kafka import KafkaProducer

from api.server import ApiServer, build_server
from api.services import Services
from dispatchwire.settings import Settings
from infra.kafka import free_port
from schemas import encode
from schemas.entities import (
    Emergency,
    EmergencyStatus,
    EmergencyType,
    Reporter,
    Unit,
    UnitStatus,
    UnitType,
)
from schemas.events import (
    EmergencyArchived,
    EmergencyCreated,
    EmergencyUpdated,
    UnitLocation,
    UnitStatusUpdate,
    event_id_for,
)
from tests.conftest import wait_for

AUTHORITY = {"Authorization": "Bearer dev-authority"}
UNIT = {"Authorization": "Bearer dev-unit"}
REPORTER = {"Authorization": "Bearer dev-reporter"}


class RunningApi:
    """``dispatchwire api`` in-process: the real uvicorn server on a free port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.server: ApiServer = build_server(settings, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="uvicorn")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        return self.server.app.state.services

    def start(self, ready: bool = True) -> RunningApi:
        self.thread.start()
        wait_for(lambda: self.server.started, 20, message="uvicorn started")
        if ready:
            wait_for(lambda: self.services.model.ready, 30, message="read model caught up")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive(), "uvicorn did not stop"

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=15, **kw)  # type: ignore[arg-type]

    def post(self, path: str, **kw: object) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kw)  # type: ignore[arg-type]


class SseClient:
    """A real SSE client (httpx-sse) read synchronously, one event at a time."""

    def __init__(
        self,
        api: RunningApi,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        last_event_id: str | None = None,
        path: str = "/api/stream",
    ) -> None:
        hdrs = dict(AUTHORITY if headers is None else headers)
        if last_event_id is not None:
            hdrs["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(timeout=httpx.Timeout(15.0))
        self._cm = connect_sse(self._client, "GET", api.url + path, headers=hdrs, params=params)
        self.source = self._cm.__enter__()
        self.response = self.source.response
        self._events: Iterator[ServerSentEvent] = self.source.iter_sse()
        self.seen: list[ServerSentEvent] = []

    def next(self) -> ServerSentEvent:
        event = next(self._events)
        self.seen.append(event)
        return event

    def take(self, n: int) -> list[ServerSentEvent]:
        return [self.next() for _ in range(n)]

    def until(
        self, predicate: Callable[[ServerSentEvent], bool], limit: int = 1000
    ) -> list[ServerSentEvent]:
        got = []
        for _ in range(limit):
            event = self.next()
            got.append(event)
            if predicate(event):
                return got
        raise AssertionError("predicate never matched")

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self._client.close()

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class EventLog:
    """Writes worker-shaped events to ``dispatch.events`` (keyed by region)."""

    settings: Settings
    producer: KafkaProducer = field(init=False)
    versions: dict[str, int] = field(default_factory=dict)
    autoflush: bool = True

    def __post_init__(self) -> None:
        self.producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all")

    def write(self, event: object) -> None:
        self.producer.send(
            self.settings.events_topic,
            encode(event),  # type: ignore[arg-type]
            key=event.region.encode(),
        )  # type: ignore[attr-defined]
        if self.autoflush:
            self.producer.flush()

    def _version(self, entity_id: str) -> int:
        self.versions[entity_id] = self.versions.get(entity_id, 0) + 1
        return self.versions[entity_id]

    def emergency(
        self,
        region: str = "north",
        command_id: str | None = None,
        emergency_id: str | None = None,
        description: str = "test",
        reporter: Reporter | None = None,
    ) -> EmergencyCreated:
        command_id = command_id or uuid.uuid4().hex
        eid = emergency_id or uuid.uuid4().hex
        emergency = Emergency(
            id=eid,
            region=region,
            type=EmergencyType.MEDICAL,
            priority=2,
            lat=60.17,
            lon=24.94,
            description=description,
            reporter=reporter,
            reported_at=datetime.now(UTC),
            version=self._version(eid),
        )
        event = EmergencyCreated(
            event_id=event_id_for(command_id, 0),
            command_id=command_id,
            region=region,
            emergency=emergency,
        )
        self.write(event)
        return event

    def unit(
        self,
        region: str = "north",
        unit_id: str | None = None,
        status: UnitStatus = UnitStatus.AVAILABLE,
    ) -> UnitStatusUpdate:
        uid = unit_id or f"u-{uuid.uuid4().hex[:8]}"
        command_id = uuid.uuid4().hex
        unit = Unit(
            id=uid,
            callsign=uid.upper()[:32],
            type=UnitType.AMBULANCE,
            region=region,
            status=status,
            lat=60.17,
            lon=24.94,
            version=self._version(uid),
        )
        event = UnitStatusUpdate(
            event_id=event_id_for(command_id, 0),
            command_id=command_id,
            region=region,
            unit_id=uid,
            status=status,
            unit=unit,
        )
        self.write(event)
        return event

    def location(
        self,
        unit_id: str,
        lat: float,
        lon: float = 24.94,
        region: str = "north",
        version: int | None = None,
    ) -> UnitLocation:
        """A ``unit_location`` of ``unit_id`` (a GPS fix); its next version unless given."""
        command_id = f"move-{uuid.uuid4().hex}"
        event = UnitLocation(
            event_id=event_id_for(command_id, 0),
            command_id=command_id,
            region=region,
            unit_id=unit_id,
            lat=lat,
            lon=lon,
            version=self._version(unit_id) if version is None else version,
        )
        self.write(event)
        return event

    def assign(
        self, created: EmergencyCreated, unit: Unit, command_id: str | None = None
    ) -> EmergencyUpdated:
        command_id = command_id or uuid.uuid4().hex
        e = created.emergency
        emergency = e.model_copy(
            update={
                "status": EmergencyStatus.ASSIGNED,
                "assigned_unit_id": unit.id,
                "version": self._version(e.id),
            }
        )
        moved = unit.model_copy(
            update={
                "status": UnitStatus.DISPATCHED,
                "emergency_id": e.id,
                "version": self._version(unit.id),
            }
        )
        event = EmergencyUpdated(
            event_id=event_id_for(command_id, 0),
            command_id=command_id,
            region=e.region,
            action="assigned",
            emergency=emergency,
            unit=moved,
        )
        self.write(event)
        return event

    def complete(self, created: EmergencyCreated, unit_id: str | None = None) -> EmergencyUpdated:
        """``created``'s emergency COMPLETED now (by ``unit_id``, if one was assigned)."""
        command_id = uuid.uuid4().hex
        e = created.emergency
        done = e.model_copy(
            update={
                "status": EmergencyStatus.COMPLETED,
                "assigned_unit_id": unit_id,
                "closed_at": datetime.now(UTC),
                "version": self._version(e.id),
            }
        )
        event = EmergencyUpdated(
            event_id=event_id_for(command_id, 0),
            command_id=command_id,
            region=e.region,
            action="completed",
            emergency=done,
        )
        self.write(event)
        return event

    def archive(self, closed: EmergencyUpdated, hours: float = 1.0) -> EmergencyArchived:
        """The sweep's ``emergency_archived`` for ``closed`` (a completion or a
        cancellation), ``hours`` after it closed."""
        e = closed.emergency
        sweep = f"sweep-{uuid.uuid4().hex[:8]}"
        event = EmergencyArchived(
            event_id=event_id_for(sweep, 0),
            command_id=sweep,
            region=e.region,
            emergency_id=e.id,
            status=e.status,
            closed_at=e.closed_at,
            occurred_at=(e.closed_at or datetime.now(UTC)) + timedelta(hours=hours),
        )
        self.write(event)
        return event

    def close(self) -> None:
        self.producer.close()


def positions(ids: list[str]) -> list[tuple[int, ...]]:
    return [tuple(int(x) for x in i.split(".")) for i in ids]


def assert_contiguous(start: str, ids: list[str]) -> None:
    """Each id moves exactly one partition forward by exactly one record from the last."""
    chain = positions([start, *ids])
    for before, after in itertools.pairwise(chain):
        steps = [b - a for a, b in zip(before, after, strict=True)]
        assert sorted(steps)[-1] == 1 and sum(steps) == 1, (before, after)


def data(event: ServerSentEvent) -> dict:
    return json.loads(event.data)
