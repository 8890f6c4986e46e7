"""200 dispatches racing for 20 units: never a unit twice, never a unit assigned to nothing."""

from __future__ import annotations

import random

import pytest

from schemas import (
    CompleteEmergency,
    DispatchEmergency,
    EmergencyStatus,
    EmergencyType,
    RegisterUnit,
    ReportEmergency,
    UnitType,
)
from schemas.geo import load_network
from streams.seed import fleet
from streams.simulate import random_road_point
from tests.conftest import wait_for
from tests.streams.helpers import Commands, EventLog
from tests.streams.invariants import (
    assert_consistent,
    assert_no_divergent_duplicates,
    wait_consistent,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def outcomes(log: EventLog, command_ids: list[str]) -> dict[str, list]:
    log.poll()
    seen: dict[str, list] = {}
    for event in log.events:
        seen.setdefault(event.command_id, []).append(event)
    return {cid: seen[cid] for cid in command_ids if cid in seen}


def wait_outcomes(log: EventLog, command_ids: list[str], timeout: float = 120.0) -> dict:
    wait_for(
        lambda: len(outcomes(log, command_ids)) == len(command_ids),
        timeout=timeout,
        interval=0.2,
        message=f"outcomes of {len(command_ids)} commands",
    )
    return outcomes(log, command_ids)


def test_200_dispatches_for_20_units(settings, running_worker):
    worker = running_worker(settings)
    network = load_network()
    rng = random.Random(7)
    commands, log = Commands(settings), EventLog(settings)
    try:
        regions = [r.id for r in network.regions]
        stations = {u.region: (u.lat, u.lon) for u in fleet(network)}
        units = [
            RegisterUnit(
                command_id=f"reg-{r}-{n}",
                region=r,
                unit_id=f"{r}-amb-{n}",
                callsign=f"{r[-2:].upper()}{n}",
                type=UnitType.AMBULANCE,
                lat=stations[r][0],
                lon=stations[r][1],
            )
            for r in regions
            for n in range(5)
        ]
        reports = []
        while len(reports) < 200:  # 50 per region
            lat, lon = random_road_point(network, rng)
            region = network.region_for(lat, lon)
            if sum(r.region == region for r in reports) < 50:
                reports.append(
                    ReportEmergency(
                        region=region,
                        type=EmergencyType.MEDICAL,
                        priority=rng.randint(1, 5),
                        lat=lat,
                        lon=lon,
                    )
                )
        commands.send_all(units + reports)
        wait_outcomes(log, [c.command_id for c in units + reports])

        dispatches = [
            DispatchEmergency(region=r.region, emergency_id=r.emergency_id) for r in reports
        ]
        rng.shuffle(dispatches)
        commands.send_all(dispatches)  # all at once: they race for the units
        results = wait_outcomes(log, [d.command_id for d in dispatches])

        assigned = [evs[0] for evs in results.values() if evs[0].event == "emergency_updated"]
        rejected = [evs[0] for evs in results.values() if evs[0].event == "command_rejected"]
        assert len(assigned) == 20 and len(rejected) == 180
        assert len({e.unit.id for e in assigned}) == 20  # no unit twice
        assert all("no available ambulance" in e.reason for e in rejected)
        fold = log.projection()
        assert_consistent(fold)
        pending = [e for e in fold.emergencies.values() if e.status == EmergencyStatus.PENDING]
        assert len(pending) == 180

        # Round two: complete the assigned ones while the pending ones are dispatched again.
        held = [e for e in fold.emergencies.values() if e.assigned_unit_id]
        completes = [CompleteEmergency(region=e.region, emergency_id=e.id) for e in held]
        again = [DispatchEmergency(region=e.region, emergency_id=e.id) for e in pending]
        mixed = completes + again
        rng.shuffle(mixed)
        commands.send_all(mixed)
        results = wait_outcomes(log, [c.command_id for c in mixed])
        assert all(results[c.command_id][0].event == "emergency_updated" for c in completes)
        wait_consistent(log)  # lent units' releases arrive (issue 15)
        assert_no_divergent_duplicates(log.events)
        wait_for(
            lambda: log.poll() and log.projection().as_json() == worker.state(),
            timeout=30,
            message="the worker's table to equal the fold",
        )
    finally:
        commands.close()
        log.close()
