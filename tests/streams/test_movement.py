"""Dispatched units drive their route in real steps, turn ON_SCENE on arrival and drive
back to their station (RETURNING) once their emergency is completed."""

from __future__ import annotations

import itertools

import pytest

from infra.topics import ensure_topics
from schemas import EmergencyStatus, UnitLocation, UnitStatus
from schemas.geo import haversine_m
from tests.streams.helpers import Commands, EventLog
from tests.streams.world import STATION, World

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NEARBY = (60.17695, 24.94175)  # ~220 m by road from STATION: a short drive


def test_unit_drives_to_the_emergency_and_arrives(make_settings, running_worker):
    settings = make_settings(tick_seconds=0.25)
    ensure_topics(settings)
    running_worker(settings)
    commands, log = Commands(settings), EventLog(settings)
    try:
        world = World(commands, log)
        unit_id = world.register(STATION)
        emergency = world.report(at=NEARBY)
        assigned, _ = world.run(world.dispatch(emergency))
        route, eta = assigned.unit.route, assigned.unit.eta_s

        arrived = log.wait(
            lambda e: e.event == "emergency_updated" and e.action == "on_scene",
            timeout=eta + 60,
            message="arrival",
        )
        moves = [e for e in log.events if isinstance(e, UnitLocation) and e.unit_id == unit_id]
        assert len(moves) >= 3
        assert [m.version for m in moves] == list(range(3, 3 + len(moves)))  # one step each
        etas = [m.eta_s for m in moves]
        assert etas == sorted(etas, reverse=True) and etas[-1] == 0.0
        assert etas[0] == pytest.approx(eta - 0.25, abs=0.05)
        points = [STATION] + [(m.lat, m.lon) for m in moves]
        steps = [haversine_m(*a, *b) for a, b in itertools.pairwise(points)]
        # real distances along the road (not a vertex per tick, not a jump to the end)
        assert all(0 < s < 20 for s in steps), steps
        assert (moves[-1].lat, moves[-1].lon) == tuple(route[-1])
        on_scene = arrived[0]
        assert on_scene.emergency.status == EmergencyStatus.ON_SCENE
        assert on_scene.emergency.on_scene_at is not None
        assert on_scene.unit.status == UnitStatus.ON_SCENE

        # completed: the unit drives back to its station (RETURNING), then is AVAILABLE there
        done = world.run(world.complete(emergency))
        back = done[0].unit
        assert back.status == UnitStatus.RETURNING and back.emergency_id is None
        assert tuple(back.route[-1]) == pytest.approx(STATION, abs=1e-6)
        home = log.wait(
            lambda e: (
                e.event == "unit_status_update"
                and e.unit_id == unit_id
                and e.status == UnitStatus.AVAILABLE
                and e.unit.version > back.version
            ),
            timeout=back.eta_s + 60,
            message="the unit back at its station",
        )
        assert (home[0].unit.lat, home[0].unit.lon) == pytest.approx(STATION, abs=1e-6)
        assert home[0].unit.route is None
        fold = log.projection()
        assert fold.units[unit_id].status == UnitStatus.AVAILABLE
    finally:
        commands.close()
        log.close()
