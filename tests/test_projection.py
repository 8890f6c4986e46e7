from __future__ import annotations

from datetime import UTC, datetime

from schemas import (
    Emergency,
    EmergencyCreated,
    EmergencyStatus,
    EmergencyUpdated,
    Unit,
    UnitLocation,
    UnitStatus,
    UnitStatusUpdate,
)
from schemas.projection import Projection

T0 = datetime(2026, 1, 1, tzinfo=UTC)
E1 = Emergency(id="e1", region="r", type="fire", priority=1, lat=60.0, lon=24.0, reported_at=T0)
U1 = Unit(id="u1", callsign="F1", type="fire_engine", region="r", lat=60.1, lon=24.1)


def _log() -> list[object]:
    e2 = E1.model_copy(
        update={"status": EmergencyStatus.ASSIGNED, "assigned_unit_id": "u1", "version": 2}
    )
    u2 = U1.model_copy(update={"status": UnitStatus.DISPATCHED, "emergency_id": "e1", "version": 2})
    return [
        UnitStatusUpdate(
            event_id="c0:0",
            command_id="c0",
            region="r",
            unit_id="u1",
            status=UnitStatus.AVAILABLE,
            unit=U1,
        ),
        EmergencyCreated(event_id="c1:0", command_id="c1", region="r", emergency=E1),
        EmergencyUpdated(
            event_id="c2:0", command_id="c2", region="r", action="assigned", emergency=e2, unit=u2
        ),
        UnitLocation(
            event_id="c3:0",
            command_id="c3",
            region="r",
            unit_id="u1",
            lat=60.05,
            lon=24.05,
            heading=10.0,
            eta_s=30.0,
            route_index=1,
            version=3,
        ),
    ]


def test_fold_gives_the_latest_state() -> None:
    p = Projection().apply_all(_log())  # type: ignore[arg-type]
    assert p.emergencies["e1"].status is EmergencyStatus.ASSIGNED
    assert p.units["u1"].status is UnitStatus.DISPATCHED
    assert (p.units["u1"].lat, p.units["u1"].version) == (60.05, 3)


def test_fold_is_idempotent_and_ignores_stale_versions() -> None:
    log = _log()
    once = Projection().apply_all(log)  # type: ignore[arg-type]
    twice = Projection().apply_all(log + log)  # type: ignore[arg-type]
    assert once.as_json() == twice.as_json()
    # An old event arriving late changes nothing.
    assert not once.apply(log[1])  # type: ignore[arg-type]
    assert not once.apply(log[3])  # type: ignore[arg-type]
