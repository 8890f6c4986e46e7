"""``dispatchwire simulate``: demo traffic on the real street network, shaped like a shift.

The plan fits the fleet ``seed`` registers (``plan_shift``). Each region reports emergencies
as a Poisson process at a rate its own units can serve, with a type mix that follows what
those units are: ambulances take the medical calls and part of the traffic accidents, the
police car the police calls and the rest of the traffic, the fire engine the fires. A call
keeps a unit busy for about the dispatch delay, the drive there (measured on the road graph
from the region's station to sample points of the region) and the time on scene; the drive
back does not count, because a RETURNING unit can be dispatched again. Each unit type gets
a planned busy share (``UTILISATION``), so the queue of PENDING emergencies stays short
(dispatch looks only inside the emergency's region) and about half the fleet is out at a
time. ``--rate R`` scales the same mix to R reports per second (above the fleet's capacity
the queue grows without end, as it did with the old fixed 0.2/s: issue 12).

With ``auto`` it also plays the dispatcher for its own reports: it dispatches each a moment
after it appears, and when no unit fits it waits for a fitting unit of that region to become
free (AVAILABLE or RETURNING) and then dispatches the most urgent, oldest waiting call, with
a slow periodic retry as a fallback; it completes an emergency ``ON_SCENE_S`` after its unit
arrives. It only sends commands and reads events, like any client.

With ``--units N`` it also drives a city's fleet (issue 16): N units (the seeded ones first,
then more of the same mix, spread over the regions' road networks and registered with
``register_unit``) patrol their region on the road graph, each sending its GPS fix (a
``unit_position`` with lat/lon) once a second while AVAILABLE, the fixes spread evenly over
the second. A unit the worker is moving (dispatched, on scene, returning) sends none; it
patrols again from wherever it became AVAILABLE. Its statuses come from the events after the
simulator started, so a unit dispatched before that gets fixes until its next status event.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from dispatchwire.settings import Settings
from infra import clients
from infra.topics import region_partitioner
from schemas import (
    FITTING_UNIT_TYPES,
    CompleteEmergency,
    DispatchEmergency,
    EmergencyType,
    Event,
    ReportEmergency,
    SchemaError,
    UnitStatus,
    UnitType,
    decode_event,
    encode,
)
from schemas.commands import CommandBase, UnitPosition
from schemas.geo import Edge, RoadNetwork, haversine_m
from streams.roadgraph import network_for
from streams.routing import GraphRouter, nearest_of
from streams.seed import FLEET, SeedUnit, fleet, register_commands

log = logging.getLogger(__name__)
T = TypeVar("T")

DESCRIPTIONS = {
    EmergencyType.MEDICAL: (
        "person collapsed on the street",
        "cyclist fell, head injury",
        "breathing difficulties",
        "allergic reaction",
    ),
    EmergencyType.POLICE: ("shoplifting in progress", "noise complaint", "suspicious person"),
    EmergencyType.FIRE: ("smoke from a window", "car on fire", "fire alarm going off"),
    EmergencyType.TRAFFIC: ("two cars collided", "tram and car collision", "scooter crash"),
}
DISPATCH_AFTER_S = (1.0, 3.0)  # the simulated dispatcher's reaction time
ON_SCENE_S = (60.0, 150.0)  # how long a unit works on scene before the call is completed
RETRY_AFTER_S = 30.0  # fallback retry of a waiting call no freed unit has picked up
# The planned busy share of each unit type (ambulances and police cars are the busy ones).
UTILISATION = {UnitType.AMBULANCE: 0.5, UnitType.FIRE_ENGINE: 0.3, UnitType.POLICE_CAR: 0.5}
# What each unit type's planned work is made of (shares sum to 1 per unit type).
WORK_MIX: dict[UnitType, tuple[tuple[EmergencyType, float], ...]] = {
    UnitType.AMBULANCE: ((EmergencyType.MEDICAL, 0.85), (EmergencyType.TRAFFIC, 0.15)),
    UnitType.FIRE_ENGINE: ((EmergencyType.FIRE, 1.0),),
    UnitType.POLICE_CAR: ((EmergencyType.POLICE, 0.8), (EmergencyType.TRAFFIC, 0.2)),
}
TRAVEL_SAMPLES = 30  # road points per region to measure the drive from its station
PATROL_SPEED_MS = 8.0  # a patrolling unit's speed on the road graph (about 30 km/h)
GPS_HZ = 1.0  # GPS fixes per second of each patrolling unit
FETCH_MIN_BYTES = 64 * 1024  # the simulator's fetches: 64 KiB or FETCH_WAIT_MS (_Client)
FETCH_WAIT_MS = 50
CLOSE_TIMEOUT_S = 10.0  # what is still batched at the end may take this long to leave
# The loop's pace with a fleet: fixes leave at most this late, in small groups. With
# kafka-python, the loop woke at every fetch the fleet's events brought: about 170 sends a
# second of 5-6 fixes each at 1,000 units; this pace makes ~200 of ~5. It shapes the load
# the worker sees (at a 10 ms pace, ~85 sends of ~12, the worker's batches grew from 7-9
# to 11-17 commands in the fleet bench, and larger batches cost it less per fix), so it
# stays near the old one.
PACE_S = 0.004


def _routable_edges(network: RoadNetwork) -> list[Edge]:
    return [e for e in network.edges if e.u in network.routable and e.v in network.routable]


def _point_on(network: RoadNetwork, edge: Edge, rng: random.Random) -> tuple[float, float]:
    a, b = network.nodes[edge.u], network.nodes[edge.v]
    f = rng.random()
    return round(a[0] + (b[0] - a[0]) * f, 7), round(a[1] + (b[1] - a[1]) * f, 7)


def random_road_point(network: RoadNetwork, rng: random.Random) -> tuple[float, float]:
    return _point_on(network, rng.choice(_routable_edges(network)), rng)


def region_edges(network: RoadNetwork) -> dict[str, list[Edge]]:
    """The routable road segments whose both ends lie in each region (so every point on
    them is in the region: regions are rectangles)."""
    out: dict[str, list[Edge]] = {r.id: [] for r in network.regions}
    for edge in _routable_edges(network):
        region = network.region_for(*network.nodes[edge.u])
        if region == network.region_for(*network.nodes[edge.v]) and region in out:
            out[region].append(edge)
    return out


@dataclass
class ShiftPlan:
    """Reports per second, by region and emergency type."""

    rates: dict[str, dict[EmergencyType, float]]
    busy_s: dict[str, float] = field(default_factory=dict)  # planned busy time of a call

    @property
    def total(self) -> float:
        return sum(sum(by_type.values()) for by_type in self.rates.values())

    def scaled(self, total: float) -> ShiftPlan:
        factor = total / self.total if self.total else 0.0
        return ShiftPlan(
            {r: {t: v * factor for t, v in by_type.items()} for r, by_type in self.rates.items()},
            dict(self.busy_s),
        )

    def offered_load(self, region: str, units: Sequence[SeedUnit]) -> dict[UnitType, float]:
        """Planned busy share of each unit type of ``region`` (``rate * busy_s / units``),
        counting a call that several types can answer against its first choice's plan."""
        counts: dict[UnitType, int] = {}
        for u in units:
            if u.region == region:
                counts[u.type] = counts.get(u.type, 0) + 1
        work: dict[UnitType, float] = dict.fromkeys(counts, 0.0)
        for kind, rate in self.rates.get(region, {}).items():
            shares = {
                ut: dict(WORK_MIX[ut]).get(kind, 0.0) * counts.get(ut, 0) * UTILISATION[ut]
                for ut in FITTING_UNIT_TYPES[kind]
                if ut in counts
            }
            whole = sum(shares.values()) or 1.0
            for ut, share in shares.items():
                work[ut] += rate * self.busy_s[region] * share / whole
        return {ut: work[ut] / counts[ut] for ut in counts}

    def describe(self) -> str:
        per_region = ", ".join(
            f"{r} {sum(by_type.values()) * 60:.2f}/min" for r, by_type in self.rates.items()
        )
        return f"{self.total * 60:.1f} reports/min ({per_region})"


def plan_shift(
    network: RoadNetwork,
    units: Sequence[SeedUnit],
    rng: random.Random,
    samples: int = TRAVEL_SAMPLES,
) -> ShiftPlan:
    """Rates that keep each unit type of each region at its ``UTILISATION``."""
    router = GraphRouter(network)
    edges = region_edges(network)
    rates: dict[str, dict[EmergencyType, float]] = {}
    busy: dict[str, float] = {}
    for region in network.regions:
        mine = [u for u in units if u.region == region.id]
        if not mine or not edges[region.id]:
            continue
        station = (mine[0].lat, mine[0].lon)
        drives = []
        for _ in range(samples):
            route = router.route(station, _point_on(network, rng.choice(edges[region.id]), rng))
            if route is not None:
                drives.append(route.duration_s)
        drive = statistics.fmean(drives) if drives else 60.0
        busy[region.id] = statistics.fmean(DISPATCH_AFTER_S) + drive + statistics.fmean(ON_SCENE_S)
        by_type: dict[EmergencyType, float] = {}
        for unit in mine:
            budget = UTILISATION[unit.type] / busy[region.id]  # calls per second for this unit
            for kind, share in WORK_MIX[unit.type]:
                by_type[kind] = by_type.get(kind, 0.0) + budget * share
        rates[region.id] = by_type
    return ShiftPlan(rates, busy)


class Reports:
    """Draws the next report from a plan: its region and type by rate, a road point in it."""

    def __init__(self, network: RoadNetwork, plan: ShiftPlan, rng: random.Random) -> None:
        self.network, self.plan, self.rng = network, plan, rng
        self.edges = region_edges(network)
        self.choices = [
            (region, kind) for region, by_type in plan.rates.items() for kind in by_type
        ]
        self.weights = [plan.rates[r][k] for r, k in self.choices]

    def next_gap_s(self) -> float:
        return self.rng.expovariate(self.plan.total)

    def next(self) -> ReportEmergency:
        region, kind = self.rng.choices(self.choices, self.weights)[0]
        lat, lon = _point_on(self.network, self.rng.choice(self.edges[region]), self.rng)
        return _report(self.network, self.rng, kind, lat, lon)


def _report(
    network: RoadNetwork, rng: random.Random, kind: EmergencyType, lat: float, lon: float
) -> ReportEmergency:
    return ReportEmergency(
        command_id=f"sim-{uuid.uuid4().hex[:20]}",
        region=network.region_for(lat, lon),
        type=kind,
        priority=rng.randint(1, 5),
        lat=lat,
        lon=lon,
        description=rng.choice(DESCRIPTIONS[kind]),
        issued_by="simulator",
    )


def city_fleet(network: RoadNetwork, size: int, rng: random.Random) -> list[SeedUnit]:
    """``size`` units: the seeded fleet first, then more of its mix (two ambulances, a fire
    engine, a police car), round-robin over the regions, each at a road point of its
    region (its station stays the region's)."""
    base = fleet(network)
    if size <= len(base):
        return base[:size]
    homes: dict[str, SeedUnit] = {}
    for unit in base:
        homes.setdefault(unit.region, unit)
    edges = region_edges(network)
    kinds = [(unit_type, short) for unit_type, short, count in FLEET for _ in range(count)]
    units = list(base)
    for n in range(size - len(base)):
        home = list(homes.values())[n % len(homes)]
        unit_type, short = kinds[(n // len(homes)) % len(kinds)]
        lat, lon = _point_on(network, rng.choice(edges[home.region]), rng)
        units.append(
            SeedUnit.numbered(home.region, home.station, unit_type, short, f"x{n + 1}", lat, lon)
        )
    return units


@dataclass
class _Car:
    """A patrolling unit: on an edge of its region's road graph, ``along_m`` from its start."""

    unit: SeedUnit
    points: list[tuple[float, float]]  # the edge's polyline, in driving direction
    lengths: list[float]  # metres of each polyline segment
    node: int  # the node it drives towards
    came_from: int | None = None  # the node it left (a U-turn only at a dead end)
    along_m: float = 0.0


class Patrol:
    """The fleet's GPS fixes (see the module docstring): ``due(now)`` the fixes to send."""

    def __init__(self, network: RoadNetwork, units: Sequence[SeedUnit], rng: random.Random):
        self.network, self.rng = network, rng
        self.exits: dict[int, list[tuple[Edge, bool]]] = {}  # node -> (edge, forward) leaving it
        self.region_nodes: dict[str, list[int]] = {}
        for region, edges in region_edges(network).items():
            nodes: set[int] = set()
            for edge in edges:
                self.exits.setdefault(edge.u, []).append((edge, True))
                if not edge.oneway:
                    self.exits.setdefault(edge.v, []).append((edge, False))
                nodes.update((edge.u, edge.v))
            self.region_nodes[region] = sorted(n for n in nodes if self.exits.get(n))
        self.cars = [self._car_at(u, u.lat, u.lon) for u in units]
        self.status: dict[str, UnitStatus] = {}
        self.sent = 0  # fixes due so far (sent or skipped), round-robin over the cars
        self.start: float | None = None
        self.run = uuid.uuid4().hex[:8]

    def _car_at(self, unit: SeedUnit, lat: float, lon: float) -> _Car:
        node = nearest_of(self.network, self.region_nodes[unit.region], lat, lon)
        pos = self.network.nodes
        car = _Car(unit, [pos[node], pos[node]], [0.0], node)
        self._next_edge(car)
        return car

    def _next_edge(self, car: _Car) -> None:
        exits = self.exits.get(car.node)
        if not exits:  # no road on inside the region from here: turn round
            car.points.reverse()
            car.lengths.reverse()
            car.node, car.came_from = car.came_from or car.node, car.node
            car.along_m = 0.0
            return
        onward = [x for x in exits if (x[0].v if x[1] else x[0].u) != car.came_from] or exits
        edge, forward = self.rng.choice(onward)
        a, b = self.network.nodes[edge.u], self.network.nodes[edge.v]
        points = [a, *edge.shape, b]
        if not forward:
            points.reverse()
        car.points = points
        car.lengths = [haversine_m(*p, *q) for p, q in itertools.pairwise(points)]
        car.came_from = edge.u if forward else edge.v
        car.node = edge.v if forward else edge.u
        car.along_m = 0.0

    def _drive(self, car: _Car, seconds: float) -> tuple[float, float]:
        car.along_m += PATROL_SPEED_MS * seconds
        for _ in range(100):  # a few short edges a second; never spin on zero-length ones
            length = sum(car.lengths)
            if car.along_m < length:
                break
            rest = car.along_m - length
            self._next_edge(car)
            car.along_m = rest
        left = car.along_m
        for (p, q), length in zip(itertools.pairwise(car.points), car.lengths, strict=True):
            if left <= length and length > 0:
                f = left / length
                return round(p[0] + (q[0] - p[0]) * f, 7), round(p[1] + (q[1] - p[1]) * f, 7)
            left -= length
        return car.points[-1]

    def due(self, now: float) -> list[UnitPosition]:
        """The fixes due by ``now``: GPS_HZ per car, spread evenly over each second."""
        if self.start is None:
            self.start = now
        target = int((now - self.start) * GPS_HZ * len(self.cars))
        self.sent = max(self.sent, target - len(self.cars))  # a stalled loop skips, never bursts
        out: list[UnitPosition] = []
        while self.sent < target:
            car = self.cars[self.sent % len(self.cars)]
            self.sent += 1
            if self.status.get(car.unit.unit_id, UnitStatus.AVAILABLE) != UnitStatus.AVAILABLE:
                continue
            lat, lon = self._drive(car, 1.0 / GPS_HZ)
            out.append(
                UnitPosition(
                    command_id=f"gps-{self.run}-{self.sent}",
                    region=car.unit.region,
                    unit_id=car.unit.unit_id,
                    lat=lat,
                    lon=lon,
                    issued_by="simulator",
                )
            )
        return out

    def next_due(self) -> float:
        """When (monotonic) the next fix is due; now, before the first ``due``."""
        if self.start is None or not self.cars:
            return time.monotonic()
        return self.start + (self.sent + 1) / (GPS_HZ * len(self.cars))

    def on_event(self, event: object) -> None:
        unit = getattr(event, "unit", None)
        if unit is None or not hasattr(unit, "status"):
            return
        before = self.status.get(unit.id)
        self.status[unit.id] = unit.status
        if unit.status == UnitStatus.AVAILABLE and before not in (None, UnitStatus.AVAILABLE):
            for n, car in enumerate(self.cars):  # patrol on from where it became available
                if car.unit.unit_id == unit.id:
                    self.cars[n] = self._car_at(car.unit, unit.lat, unit.lon)


def readable_events(values: Iterable[bytes]) -> list[Event]:
    """The events of ``values``; a record that is not one is skipped and said (as the API's
    read model does), so one bad record does not stop the simulator's traffic."""
    out = []
    for value in values:
        try:
            out.append(decode_event(value))
        except SchemaError as exc:
            log.warning("simulator: skipping a record that is not an event: %s", exc)
    return out


class _Client:
    """The simulator's Kafka side: aiokafka on a private event loop, which runs while the
    simulator waits (``events``), as the sink drives its own (``analytics.sink``).

    At 1,000 units kafka-python cost the simulator about 30 % of a core, on the core the
    load shares with everything else (its poll and its producer's wake-ups, at the 100-200
    turns a second the fixes are paced by, ``PACE_S``); aiokafka parses fetches in C and its
    producer batches without a thread hand-off. The simulator acts on events seconds later,
    so its fetches wait for 64 KiB or 50 ms (``FETCH_MIN_BYTES``) instead of answering at
    the first byte. Commands are handed to the producer at once and leave as its linger
    (5 ms) ends, while the loop runs."""

    def __init__(self, settings: Settings, follow_events: bool) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.producer: AIOKafkaProducer | None = None  # made on the loop (aiokafka wants one)
        self.consumer: AIOKafkaConsumer | None = None
        self.failed = 0  # commands the broker did not take
        try:
            with clients.kafka_errors(settings, "connecting the simulator"):
                self._await(self._start(follow_events))
        except BaseException:
            self.close()
            raise

    def _await(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    async def _start(self, follow_events: bool) -> None:
        self.producer = clients.aio_producer(
            self.settings, acks="all", linger_ms=5, partitioner=region_partitioner(self.settings)
        )
        await self.producer.start()
        if not follow_events:
            return
        self.consumer = clients.aio_consumer(
            self.settings,
            group_id=None,
            enable_auto_commit=False,
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        await self.consumer.start()
        topic = self.settings.events_topic
        tps = [TopicPartition(topic, p) for p in await clients.partitions_of(self.consumer, topic)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)

    def send(self, cmd: CommandBase) -> None:
        self._await(self._send(cmd))

    async def _send(self, cmd: CommandBase) -> None:
        assert self.producer is not None
        delivery = await self.producer.send(
            self.settings.commands_topic, key=cmd.region.encode(), value=encode(cmd)
        )
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            self.failed += 1
            if self.failed == 1:  # the rest are counted, and the count said at the end
                log.warning("simulator: a command was not written: %s", delivery.exception())

    def flush(self) -> None:
        assert self.producer is not None
        self._await(self.producer.flush())

    def events(self, timeout_s: float) -> list[Event]:
        """The events that arrived, waiting up to ``timeout_s`` for the first; the producer
        sends meanwhile."""
        if self.consumer is None:
            self._await(asyncio.sleep(timeout_s))
            return []
        out: list[Event] = []
        polled = self._await(
            self.consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=1000)
        )
        for batch in polled.values():
            out.extend(readable_events(record.value for record in batch))
        return out

    def close(self) -> None:
        try:
            self._await(asyncio.wait_for(self._stop(), CLOSE_TIMEOUT_S))
        finally:
            self.loop.close()
        if self.failed:
            log.warning("simulator: %d commands were not written", self.failed)

    async def _stop(self) -> None:
        try:
            if self.producer is not None:
                await self.producer.stop()  # sends what is still batched
        finally:
            if self.consumer is not None:
                await self.consumer.stop()


@dataclass
class _Call:
    """One of the simulator's own reports, as far as its events tell."""

    region: str
    type: EmergencyType
    priority: int
    reported: float  # monotonic
    status: str = "PENDING"
    waiting: bool = False  # rejected for want of a unit; dispatched when one is freed


class _Dispatcher:
    """Plays the dispatcher for the simulator's own reports (see the module docstring)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.calls: dict[str, _Call] = {}
        self.todo: list[tuple[float, int, str, str]] = []  # (when, tiebreak, action, id)
        self.order = itertools.count()

    def later(self, delay: float, action: str, emergency_id: str) -> None:
        heapq.heappush(
            self.todo, (time.monotonic() + delay, next(self.order), action, emergency_id)
        )

    def due(self, now: float) -> list[DispatchEmergency | CompleteEmergency]:
        out: list[DispatchEmergency | CompleteEmergency] = []
        while self.todo and self.todo[0][0] <= now:
            _, _, action, em_id = heapq.heappop(self.todo)
            call = self.calls.get(em_id)
            if call is None:
                continue
            if action == "complete":
                out.append(
                    CompleteEmergency(region=call.region, emergency_id=em_id, issued_by="simulator")
                )
            elif call.status == "PENDING" and (action == "dispatch" or call.waiting):
                call.waiting = False
                out.append(
                    DispatchEmergency(region=call.region, emergency_id=em_id, issued_by="simulator")
                )
        return out

    def on_event(self, event: object) -> None:
        kind = getattr(event, "event", None)
        if kind == "unit_status_update":
            unit = event.unit  # type: ignore[attr-defined]
            if unit.status in (UnitStatus.AVAILABLE, UnitStatus.RETURNING):
                self._unit_freed(unit.region, unit.type)
            return
        em_id = getattr(getattr(event, "emergency", None), "id", None) or getattr(
            event, "emergency_id", None
        )
        call = self.calls.get(em_id) if em_id is not None else None
        if em_id is None or call is None:
            return
        if kind == "emergency_created":
            self.later(self.rng.uniform(*DISPATCH_AFTER_S), "dispatch", em_id)
        elif kind == "command_rejected" and event.command_kind == "dispatch_emergency":  # type: ignore[attr-defined]
            if call.status == "PENDING":  # (a late duplicate's rejection changes nothing)
                call.waiting = True
                self.later(RETRY_AFTER_S, "retry", em_id)
        elif kind == "emergency_updated":
            call.status = event.emergency.status.value  # type: ignore[attr-defined]
            if event.action == "on_scene":  # type: ignore[attr-defined]
                self.later(self.rng.uniform(*ON_SCENE_S), "complete", em_id)
            elif event.action in ("completed", "cancelled"):  # type: ignore[attr-defined]
                self.calls.pop(em_id, None)

    def _unit_freed(self, region: str, unit_type: UnitType) -> None:
        waiting = [
            (c.priority, c.reported, em_id)
            for em_id, c in self.calls.items()
            if c.waiting and c.region == region and unit_type in FITTING_UNIT_TYPES[c.type]
        ]
        if waiting:
            _, _, em_id = min(waiting)
            self.calls[em_id].waiting = False
            self.later(self.rng.uniform(*DISPATCH_AFTER_S), "dispatch", em_id)


def simulate(
    settings: Settings,
    rate: float | None = None,
    auto: bool = False,
    count: int | None = None,
    duration: float | None = None,
    seed: int | None = None,
    units: int | None = None,
) -> int:
    """Run until ``count`` reports or ``duration`` seconds (or Ctrl-C); returns reports sent.

    ``rate`` None: the shift plan fitted to the seeded fleet; else that mix at ``rate``/s.
    ``units``: also drive a fleet of that many units (``Patrol``)."""
    network = network_for(settings)
    rng = random.Random(seed)
    plan = plan_shift(network, fleet(network), rng)
    if rate is not None:
        plan = plan.scaled(rate)
    log.info("simulator plan: %s", plan.describe())
    reports = Reports(network, plan, rng)
    dispatcher = _Dispatcher(rng)
    client = _Client(settings, follow_events=auto or bool(units))
    patrol = None
    if units:
        city = city_fleet(network, units, rng)
        for register in register_commands(city):  # idempotent: the seeded ones are known
            client.send(register)
        client.flush()
        patrol = Patrol(network, city, rng)
        log.info("simulator drives %d units at %.0f Hz", len(city), GPS_HZ)
    start = time.monotonic()
    next_report = start + (reports.next_gap_s() if plan.total > 0 else 0.0)
    sent = 0
    try:
        while True:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            if (count is None or sent < count) and plan.total > 0 and now >= next_report:
                report = reports.next()
                client.send(report)
                if auto:
                    dispatcher.calls[report.emergency_id] = _Call(
                        report.region, report.type, report.priority, now
                    )
                sent += 1
                next_report += reports.next_gap_s()
            elif count is not None and sent >= count and (not auto or not dispatcher.calls):
                break  # with --auto, once every report of ours is closed
            for cmd in dispatcher.due(now):
                client.send(cmd)
            if patrol is not None:
                for fix in patrol.due(now):
                    client.send(fix)
            # until the next report or fix, but at least PACE_S
            due = min(next_report, patrol.next_due()) if patrol is not None else next_report
            wait = max(PACE_S, min(due - time.monotonic(), 0.05 if patrol else 0.2))
            for event in client.events(wait):
                dispatcher.on_event(event)
                if patrol is not None:
                    patrol.on_event(event)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    log.info("simulator sent %d reports", sent)
    return sent
