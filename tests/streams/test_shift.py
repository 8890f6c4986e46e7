"""Issue 12 item 2: the demo reaches a steady state instead of piling up PENDING calls.

``make run`` ran the simulator at a fixed 0.2 reports/s with 8-20 s on scene, more than the
16 seeded units can serve: 12 PENDING after 2 minutes, 26 after 6, growing ~4 a minute.
The simulator now plans its rate and mix from the fleet (``streams.simulate.plan_shift``).
These tests check the plan against the fleet, and run the simulator exactly as
``dispatchwire run`` starts it, against the real broker and worker, for a bounded time.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from cli.main import build_parser, subcommands
from cli.run import _parts
from schemas import EmergencyStatus, UnitType
from schemas.geo import load_network
from streams.seed import fleet, seed
from streams.simulate import UTILISATION, plan_shift
from tests.conftest import settings_env
from tests.streams.helpers import EventLog

RUN_S = 180.0  # the bounded run; the old simulator had ~10 PENDING by then


def test_the_shift_plan_keeps_every_unit_type_of_every_region_below_capacity():
    network = load_network()
    units = fleet(network)
    plan = plan_shift(network, units, random.Random(1))
    assert set(plan.rates) == {r.id for r in network.regions}
    for region in plan.rates:
        load = plan.offered_load(region, units)
        assert set(load) == {UnitType.AMBULANCE, UnitType.FIRE_ENGINE, UnitType.POLICE_CAR}
        for unit_type, share in load.items():
            assert share == pytest.approx(UTILISATION[unit_type], rel=1e-6), (region, unit_type)
            assert share < 0.75
        # the drive there is measured on the road graph, not assumed
        assert 60 < plan.busy_s[region] < 400
    # a demo, not an idle map: a couple of calls a minute across the city
    assert 1.0 < plan.total * 60 < 6.0


def test_a_fixed_rate_scales_the_same_mix():
    network = load_network()
    plan = plan_shift(network, fleet(network), random.Random(1))
    scaled = plan.scaled(0.2)
    assert scaled.total == pytest.approx(0.2)
    for region, by_type in plan.rates.items():
        for kind, rate in by_type.items():
            assert scaled.rates[region][kind] / rate == pytest.approx(0.2 / plan.total)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(RUN_S + 240)
def test_make_run_s_simulator_reaches_a_steady_state(make_settings, running_worker):
    settings = make_settings(partitions=4)
    running_worker(settings)
    seed(settings)
    # the simulator's command line exactly as `dispatchwire run` builds it (its defaults)
    args = build_parser().parse_args(["run"])
    (simulator,) = [p for p in _parts(settings, args, subcommands()) if p.name == "simulator"]
    argv = [*simulator.argv, "--duration", str(RUN_S), "--seed", "3"]
    log = EventLog(settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatchwire", *argv],
        env=settings_env(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    start = time.monotonic()
    samples: list[tuple[float, int]] = []  # (seconds since start, PENDING count)
    try:
        while proc.poll() is None:  # each poll waits up to 200 ms for events
            log.poll()
            fold = log.projection()
            pending = sum(e.status == EmergencyStatus.PENDING for e in fold.emergencies.values())
            samples.append((time.monotonic() - start, pending))
            assert time.monotonic() - start < RUN_S + 60, "the simulator did not stop"
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
        log.close()
    assert proc.returncode == 0, output
    fold = log.projection()
    reports = len(fold.emergencies)
    served = sum(e.assigned_unit_id is not None for e in fold.emergencies.values())
    second_half = [p for t, p in samples if t >= RUN_S / 2]
    summary = (
        f"{reports} reports, {served} dispatched, PENDING max {max(p for _, p in samples)}"
        f", second half max {max(second_half)}, at the end {samples[-1][1]}\n{output}"
    )
    assert reports >= 3, summary
    assert max(second_half) <= 4, summary
    assert samples[-1][1] <= 3, summary
    assert served >= reports - samples[-1][1], summary  # nothing else is stuck
