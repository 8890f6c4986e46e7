"""Build event logs by hand, the way the worker would write them, and put them on Kafka."""

from __future__ import annotations

from datetime import datetime, timedelta

from kafka import KafkaProducer

from dispatchwire.settings import Settings
from schemas import (
    Emergency,
    EmergencyCreated,
    EmergencyStatus,
    EmergencyUpdated,
    Unit,
    UnitLocation,
    UnitStatus,
    UnitStatusUpdate,
    encode,
    event_id_for,
)


class Story:
    """A sequence of events with versions, ids and times kept consistent."""

    def __init__(self, prefix: str = "c") -> None:
        self.prefix = prefix
        self.events: list = []
        self.emergencies: dict[str, Emergency] = {}
        self.units: dict[str, Unit] = {}
        self._n = 0

    def _cmd(self) -> str:
        self._n += 1
        return f"{self.prefix}{self._n}"

    def _emit(self, cls: type, region: str, at: datetime, **fields: object) -> None:
        cmd = self._cmd()
        self.events.append(
            cls(
                event_id=event_id_for(cmd, 0),
                command_id=cmd,
                region=region,
                occurred_at=at,
                **fields,
            )
        )

    def unit(self, uid: str, type_: str, region: str, at: datetime, lat: float, lon: float) -> None:
        u = Unit(id=uid, callsign=uid.upper(), type=type_, region=region, lat=lat, lon=lon)
        self.units[uid] = u
        self._emit(UnitStatusUpdate, region, at, unit_id=uid, status=u.status, unit=u)

    def report(
        self,
        eid: str,
        type_: str,
        region: str,
        at: datetime,
        lat: float,
        lon: float,
        priority: int = 2,
    ) -> None:
        e = Emergency(
            id=eid, region=region, type=type_, priority=priority, lat=lat, lon=lon, reported_at=at
        )
        self.emergencies[eid] = e
        self._emit(EmergencyCreated, region, at, emergency=e)

    def _update(
        self, eid: str, at: datetime, action: str, e_fields: dict, unit_status: UnitStatus | None
    ) -> None:
        e = self.emergencies[eid]
        e = e.model_copy(update={**e_fields, "version": e.version + 1})
        self.emergencies[eid] = e
        unit = None
        uid = e.assigned_unit_id
        if uid and unit_status is not None:
            u = self.units[uid]
            busy = unit_status is not UnitStatus.AVAILABLE
            unit = u.model_copy(
                update={
                    "status": unit_status,
                    "version": u.version + 1,
                    "emergency_id": eid if busy else None,
                }
            )
            self.units[uid] = unit
        self._emit(EmergencyUpdated, e.region, at, action=action, emergency=e, unit=unit)

    def assign(self, eid: str, uid: str, at: datetime) -> None:
        self._update(
            eid,
            at,
            "assigned",
            {"status": EmergencyStatus.ASSIGNED, "assigned_unit_id": uid, "assigned_at": at},
            UnitStatus.DISPATCHED,
        )

    def on_scene(self, eid: str, at: datetime) -> None:
        self._update(
            eid,
            at,
            "on_scene",
            {"status": EmergencyStatus.ON_SCENE, "on_scene_at": at},
            UnitStatus.ON_SCENE,
        )

    def complete(self, eid: str, at: datetime) -> None:
        self._update(
            eid,
            at,
            "completed",
            {"status": EmergencyStatus.COMPLETED, "closed_at": at},
            UnitStatus.AVAILABLE,
        )

    def cancel(self, eid: str, at: datetime) -> None:
        self._update(
            eid, at, "cancelled", {"status": EmergencyStatus.CANCELLED, "closed_at": at}, None
        )

    def move(self, uid: str, at: datetime, lat: float, lon: float) -> None:
        u = self.units[uid]
        u = u.model_copy(
            update={"lat": lat, "lon": lon, "version": u.version + 1, "updated_at": at}
        )
        self.units[uid] = u
        self._emit(
            UnitLocation,
            u.region,
            at,
            unit_id=uid,
            lat=lat,
            lon=lon,
            heading=0.0,
            eta_s=None,
            route_index=None,
            version=u.version,
        )


def busy_log(
    n_units: int,
    moves: int,
    t0: datetime,
    regions: tuple[str, ...] = ("r1", "r2"),
    prefix: str = "c",
) -> Story:
    """Units spread over regions, each reporting ``moves`` positions, plus a few incidents."""
    story = Story(prefix)
    for i in range(n_units):
        story.unit(f"u{i}", "ambulance", regions[i % len(regions)], t0, 60.15 + i * 1e-3, 24.9)
    t = t0
    for step in range(moves):
        t = t + timedelta(milliseconds=10)
        for i in range(n_units):
            story.move(f"u{i}", t, 60.15 + i * 1e-3 + step * 1e-5, 24.9 + step * 1e-5)
        if step % 50 == 0:
            eid = f"e{step}"
            region = regions[step % len(regions)]
            story.report(eid, "medical", region, t, 60.16, 24.93)
    return story


def produce_events(
    settings: Settings, events: list, topic: str | None = None, duplicate_every: int = 0
) -> list[bytes]:
    """Send ``events`` keyed by region; every ``duplicate_every``-th is sent twice
    (a worker redelivering after a crash). Returns the values in send order."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    sent = []
    try:
        for i, event in enumerate(events):
            value = encode(event)
            copies = 2 if duplicate_every and i % duplicate_every == 0 else 1
            for _ in range(copies):
                producer.send(
                    topic or settings.events_topic, key=event.region.encode(), value=value
                )
                sent.append(value)
        producer.flush()
    finally:
        producer.close()
    return sent
