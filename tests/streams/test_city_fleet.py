"""Issue 16, part 2: ``dispatchwire simulate --units N`` drives a city's fleet on the road
graph: N registered units spread over the regions, a GPS fix a second each while AVAILABLE."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from schemas import UnitStatus
from schemas.geo import haversine_m, load_network
from streams.seed import fleet
from streams.simulate import GPS_HZ, PATROL_SPEED_MS, Patrol, city_fleet
from tests.conftest import wait_for
from tests.streams.helpers import EventLog
from tests.streams.test_cli import dispatchwire


def test_a_fleet_of_1000_is_spread_over_the_regions_and_sends_a_fix_a_second_each():
    network = load_network()
    rng = random.Random(7)
    city = city_fleet(network, 1000, rng)
    assert len({u.unit_id for u in city}) == 1000
    assert [u.unit_id for u in city[:16]] == [u.unit_id for u in fleet(network)]
    per_region = Counter(u.region for u in city)
    assert set(per_region) == {r.id for r in network.regions}
    assert max(per_region.values()) - min(per_region.values()) <= 1
    assert len({(u.lat, u.lon) for u in city}) > 900  # on the roads, not piled on the station

    patrol = Patrol(network, city, rng)
    busy = city[3].unit_id
    patrol.status[busy] = UnitStatus.DISPATCHED  # the worker moves it: no fixes
    fixes = [f for tenth in range(1, 31) for f in patrol.due(tenth / 10)]
    per_unit = Counter(f.unit_id for f in fixes)
    assert busy not in per_unit
    assert len(per_unit) == 999 and set(per_unit.values()) <= {2, 3}  # 2.9 s at 1 Hz
    last: dict[str, tuple[float, float]] = {}
    for fix in fixes:
        assert network.region_for(fix.lat, fix.lon) == fix.region
        if fix.unit_id in last:
            step = haversine_m(*last[fix.unit_id], fix.lat, fix.lon)
            assert 0 < step <= PATROL_SPEED_MS / GPS_HZ + 0.5
        last[fix.unit_id] = (fix.lat, fix.lon)


@pytest.mark.kafka
def test_simulate_units_registers_and_moves_the_fleet(settings, running_worker):
    running_worker(settings)
    log = EventLog(settings)
    try:
        dispatchwire(settings, "simulate", "--units", "40", "--rate", "0", "--duration", "6")
        wait_for(
            lambda: log.poll() and len(log.projection().units) == 40, message="40 registered units"
        )
        wait_for(
            lambda: len({e.unit_id for e in log.poll() if e.event == "unit_location"}) == 40,
            message="a GPS fix of every unit",
        )
    finally:
        log.close()


def test_a_record_that_is_not_an_event_does_not_stop_the_simulator(caplog):
    # dispatchwire simulate follows dispatch.events; one bad record used to end its traffic
    from schemas import encode
    from schemas.events import UnitLocation
    from streams.simulate import readable_events

    moved = UnitLocation(
        event_id="e1", command_id="c1", region="r", unit_id="u1", lat=60.17, lon=24.94, version=2
    )
    with caplog.at_level("WARNING", logger="streams.simulate"):
        events = readable_events([b"not json", encode(moved), b'{"event": "no such"}'])
    assert events == [moved]
    assert sum("not an event" in r.getMessage() for r in caplog.records) == 2
