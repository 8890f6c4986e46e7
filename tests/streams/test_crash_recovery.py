"""SIGKILL the worker mid-stream; the restarted worker's table equals the fold of the log."""

from __future__ import annotations

import random

import pytest

from schemas import (
    CompleteEmergency,
    DispatchEmergency,
    EmergencyType,
    ReportEmergency,
)
from schemas.geo import load_network
from streams.seed import fleet, register_commands
from streams.simulate import random_road_point
from tests.conftest import wait_for
from tests.streams.helpers import Commands, EventLog
from tests.streams.invariants import assert_no_divergent_duplicates, wait_consistent

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def workload(rng: random.Random, n: int = 900) -> list:
    """Reports, their dispatches a little later, completions later still, and some
    commands sent twice (a client retry with the same command id)."""
    network = load_network()
    reports = []
    for _ in range(n):
        lat, lon = random_road_point(network, rng)
        reports.append(
            ReportEmergency(
                region=network.region_for(lat, lon),
                type=rng.choice(list(EmergencyType)),
                priority=3,
                lat=lat,
                lon=lon,
            )
        )
    out: list = []
    for i, report in enumerate(reports):
        out.append(report)
        if i >= 5:
            r = reports[i - 5]
            out.append(DispatchEmergency(region=r.region, emergency_id=r.emergency_id))
        if i >= 30 and i % 2 == 0:
            r = reports[i - 30]
            out.append(CompleteEmergency(region=r.region, emergency_id=r.emergency_id))
        if i % 15 == 0 and out:
            out.append(rng.choice(out))  # a duplicate
    return out


def test_sigkill_mid_stream_loses_and_doubles_nothing(make_settings, running_worker):
    from infra.topics import ensure_topics

    settings = make_settings(tick_seconds=0.3)
    ensure_topics(settings)
    worker = running_worker(settings)
    rng = random.Random(11)
    commands, log = Commands(settings), EventLog(settings)
    try:
        seeds = register_commands(fleet(load_network()))
        commands.send_all(seeds)
        work = workload(rng)
        backlog, rest = work[: len(work) * 2 // 3], work[len(work) * 2 // 3 :]
        commands.send_all(backlog)
        backlog_ids = {c.command_id for c in backlog}

        def flowing() -> bool:  # the worker is into the backlog (past the registrations)
            return any(e.command_id in backlog_ids for e in log.poll())

        wait_for(flowing, timeout=60, interval=0.05, message="the stream to be flowing")
        worker.kill()  # mid-stream: most of the backlog is still unprocessed
        answered_at_kill = {e.command_id for e in log.poll()}
        assert len(answered_at_kill & backlog_ids) < len(backlog) // 2
        commands.send_all(rest)
        worker.start()

        ids = [c.command_id for c in work]

        def answered() -> bool:
            log.poll()
            return {e.command_id for e in log.events} >= set(ids)

        wait_for(answered, timeout=120, interval=0.2, message="an outcome for every command")
        # Quiesce: close whatever is still open, so units stop moving.
        fold = log.projection()
        closing = [
            CompleteEmergency(region=e.region, emergency_id=e.id)
            for e in fold.emergencies.values()
            if e.assigned_unit_id and e.status in ("ASSIGNED", "ON_SCENE")
        ]
        commands.send_all(closing)
        wait_for(
            lambda: (
                log.poll() and {e.command_id for e in log.events} >= {c.command_id for c in closing}
            ),
            timeout=60,
            message="closing outcomes",
        )

        fold = wait_consistent(log)  # lent units' releases arrive (issue 15)
        assert_no_divergent_duplicates(log.events)
        # Every command had exactly one effect: one outcome per distinct command
        # (a redelivered command's events repeat with their ids), never two decisions.
        first_events = {}
        for event in log.events:
            first_events.setdefault(event.event_id, event)
        for cid in set(ids):
            kinds = {e.event for e in first_events.values() if e.command_id == cid}
            kinds.discard("command_repeated")  # a duplicate's answer, not a second decision
            assert kinds, cid
            assert not ("command_rejected" in kinds and len(kinds) > 1), (cid, kinds)
        assert worker.state() == fold.as_json()
        # And a third worker, recovering only from the changelog, agrees.
        worker.restart()
        assert worker.state() == fold.as_json()
    finally:
        commands.close()
        log.close()
