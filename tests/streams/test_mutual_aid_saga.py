"""Mutual aid (issue 15) against the real broker and real worker processes.

Every emergency is in hki-se, which has no ambulance: each one is served (or refused) by a
unit of another region, through the reserve / answer / release saga over the commands topic.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest

from dispatchwire.settings import Settings
from schemas import (
    DispatchEmergency,
    EmergencyType,
    RegisterUnit,
    ReportEmergency,
    UnitType,
)
from schemas.events import Event, UnitStatusUpdate
from schemas.geo import load_network
from schemas.placement import partition_for
from streams.simulate import random_road_point
from tests.conftest import WorkerProcess, wait_for
from tests.streams.helpers import Commands, EventLog
from tests.streams.invariants import assert_no_divergent_duplicates, wait_consistent

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

LENDERS = ("hki-nw", "hki-ne", "hki-sw")
NEEDY = "hki-se"
PER_REGION = 4


def units(network) -> list[RegisterUnit]:
    rng = random.Random(15)
    out = []
    for region in LENDERS:
        for n in range(PER_REGION):
            lat, lon = random_road_point(network, rng)
            out.append(
                RegisterUnit(
                    command_id=f"reg-{region}-{n}",
                    region=region,
                    unit_id=f"{region}-amb-{n}",
                    callsign=f"{region[-2:].upper()}{n}",
                    type=UnitType.AMBULANCE,
                    lat=lat,
                    lon=lon,
                )
            )
    return out


def reports(network, count: int) -> list[ReportEmergency]:
    rng = random.Random(51)
    out = []
    for _ in range(count):
        lat, lon = random_road_point(network, rng)
        out.append(
            ReportEmergency(
                region=NEEDY,
                type=EmergencyType.MEDICAL,
                priority=rng.randint(1, 5),
                lat=lat,
                lon=lon,
            )
        )
    return out


def first_outcomes(log: EventLog, command_ids: list[str], timeout: float = 120.0) -> dict:
    """The first assigned-or-rejected event of every command (waits for all)."""
    wanted = set(command_ids)

    def found() -> dict[str, Event]:
        log.poll()
        first: dict[str, Event] = {}
        for e in log.events:
            if e.command_id in wanted and e.event in ("emergency_updated", "command_rejected"):
                first.setdefault(e.command_id, e)
        return first if len(first) == len(wanted) else {}

    return wait_for(found, timeout=timeout, interval=0.3, message="every dispatch's outcome")  # type: ignore[return-value]


def sees_fleet(worker: WorkerProcess, count: int) -> bool:
    body = httpx.get(f"{worker.url}/dispatch/fleet/", timeout=5).json()
    return len(body["units"]) >= count


def merged_state(workers: list[WorkerProcess]) -> dict:
    emergencies, units = {}, {}
    for w in workers:
        state = w.state()
        emergencies.update({e["id"]: e for e in state["emergencies"]})
        units.update({u["id"]: u for u in state["units"]})
    return {
        "emergencies": [emergencies[k] for k in sorted(emergencies)],
        "units": [units[k] for k in sorted(units)],
    }


def check_end_state(log: EventLog, workers: list[WorkerProcess], outcomes: dict) -> None:
    assigned = [e for e in outcomes.values() if e.event == "emergency_updated"]
    rejected = [e for e in outcomes.values() if e.event == "command_rejected"]
    assert assigned, "no emergency got a unit"
    assert len({e.emergency.assigned_unit_id for e in assigned}) == len(assigned)  # never twice
    assert len(assigned) <= len(LENDERS) * PER_REGION
    assert all(e.unit.region != NEEDY for e in assigned)
    assert all("no available ambulance" in e.reason for e in rejected), {e.reason for e in rejected}
    answers: dict[str, set[str]] = {}
    for e in log.events:
        if e.command_id in outcomes and e.event in ("emergency_updated", "command_rejected"):
            answers.setdefault(e.command_id, set()).add(e.event_id)
    # exactly one visible outcome per dispatch (copies re-published after a crash keep ids)
    assert all(len(ids) == 1 for ids in answers.values()), answers
    wait_consistent(log)  # no reserved unit without its emergency: nothing orphaned
    assert_no_divergent_duplicates(log.events)
    wait_for(
        lambda: log.poll() is not None and merged_state(workers) == log.projection().as_json(),
        timeout=30,
        message="the workers' tables to equal the fold",
    )


def test_200_dispatches_served_by_other_regions_across_two_workers(
    settings: Settings, running_worker: Callable[[Settings], WorkerProcess]
):
    network = load_network()
    first = running_worker(settings)
    second = running_worker(settings)
    workers = [first, second]

    def split() -> bool:
        owned = [httpx.get(f"{w.url}/dispatch/ready/", timeout=5).json() for w in workers]
        parts = [set(o.get("partitions", [])) for o in owned]
        return all(o["ready"] for o in owned) and all(parts) and not parts[0] & parts[1]

    wait_for(split, timeout=90, interval=0.5, message="two workers owning disjoint partitions")
    owner = {
        r: next(
            i
            for i, w in enumerate(workers)
            if partition_for(r, settings.partitions, settings.regions)
            in httpx.get(f"{w.url}/dispatch/ready/", timeout=5).json()["partitions"]
        )
        for r in (*LENDERS, NEEDY)
    }
    commands, log = Commands(settings), EventLog(settings)
    try:
        fleet = units(network)
        emergencies = reports(network, 200)
        commands.send_all(fleet + emergencies)
        wait_for(
            lambda: (
                len(log.wait(lambda e: e.event == "emergency_created")) == 200
                and all(sees_fleet(w, len(fleet)) for w in workers)
            ),
            timeout=60,
            message="the reports, and the fleet in both workers' views",
        )
        dispatches = [
            DispatchEmergency(region=NEEDY, emergency_id=r.emergency_id) for r in emergencies
        ]
        commands.send_all(dispatches)  # all at once: they race for 12 units of 3 regions
        outcomes = first_outcomes(log, [d.command_id for d in dispatches])
        check_end_state(log, workers, outcomes)
        assert any(owner[r] != owner[NEEDY] for r in LENDERS), owner
        assert any(
            owner[e.unit.region] != owner[NEEDY]
            for e in outcomes.values()
            if e.event == "emergency_updated"
        ), "no unit crossed from one worker to the other"
    finally:
        commands.close()
        log.close()


def test_sigkill_between_reserve_and_assign_leaves_no_orphan(
    settings: Settings, running_worker: Callable[[Settings], WorkerProcess]
):
    network = load_network()
    worker = running_worker(settings)
    commands, log = Commands(settings), EventLog(settings)
    try:
        fleet = units(network)
        emergencies = reports(network, 100)
        commands.send_all(fleet + emergencies)
        wait_for(
            lambda: (
                len(log.wait(lambda e: e.event == "emergency_created")) == 100
                and sees_fleet(worker, len(fleet))
            ),
            timeout=60,
            message="the reports and the fleet",
        )
        dispatches = [
            DispatchEmergency(region=NEEDY, emergency_id=r.emergency_id) for r in emergencies
        ]
        commands.send_all(dispatches)

        def reserved() -> list[Event]:
            log.poll()
            return [e for e in log.events if isinstance(e, UnitStatusUpdate) and e.mutual_aid]

        wait_for(reserved, timeout=60, interval=0.01, message="a first reservation")
        worker.kill()  # SIGKILL: nothing flushed or committed after this
        worker.start()
        outcomes = first_outcomes(log, [d.command_id for d in dispatches])
        check_end_state(log, [worker], outcomes)
    finally:
        commands.close()
        log.close()
