"""``dispatchwire simulate``: demo traffic on the real street network.

Reports emergencies at random points on routable roads at ``rate`` per second. With
``auto`` it also plays the dispatcher: it dispatches each of its reports a moment after it
appears, retries while no unit is free, and completes an emergency a while after its unit
arrives, so the map stays lively. It only sends commands and reads events, like any client.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dispatchwire.errors import KafkaUnavailable
from dispatchwire.settings import Settings
from schemas import (
    CompleteEmergency,
    DispatchEmergency,
    EmergencyType,
    ReportEmergency,
    decode_event,
    encode,
)
from schemas.geo import RoadNetwork
from streams.roadgraph import network_for

log = logging.getLogger(__name__)

TYPES = ((EmergencyType.MEDICAL, 0.5), (EmergencyType.POLICE, 0.2),
         (EmergencyType.FIRE, 0.15), (EmergencyType.TRAFFIC, 0.15))
DESCRIPTIONS = {
    EmergencyType.MEDICAL: ("person collapsed on the street", "cyclist fell, head injury",
                            "breathing difficulties", "allergic reaction"),
    EmergencyType.POLICE: ("shoplifting in progress", "noise complaint", "suspicious person"),
    EmergencyType.FIRE: ("smoke from a window", "car on fire", "fire alarm going off"),
    EmergencyType.TRAFFIC: ("two cars collided", "tram and car collision", "scooter crash"),
}
DISPATCH_AFTER_S = (1.0, 3.0)
RETRY_AFTER_S = 8.0
COMPLETE_AFTER_S = (8.0, 20.0)


def random_road_point(network: RoadNetwork, rng: random.Random) -> tuple[float, float]:
    edges = [e for e in network.edges if e.u in network.routable and e.v in network.routable]
    edge = rng.choice(edges)
    a, b = network.nodes[edge.u], network.nodes[edge.v]
    f = rng.random()
    return round(a[0] + (b[0] - a[0]) * f, 7), round(a[1] + (b[1] - a[1]) * f, 7)


def random_report(network: RoadNetwork, rng: random.Random) -> ReportEmergency:
    kinds, weights = zip(*TYPES, strict=True)
    kind = rng.choices(kinds, weights)[0]
    lat, lon = random_road_point(network, rng)
    return ReportEmergency(
        command_id=f"sim-{uuid.uuid4().hex[:20]}", region=network.region_for(lat, lon),
        type=kind, priority=rng.randint(1, 5), lat=lat, lon=lon,
        description=rng.choice(DESCRIPTIONS[kind]), issued_by="simulator",
    )


class _Client:
    def __init__(self, settings: Settings, follow_events: bool) -> None:
        self.settings = settings
        try:
            self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                          linger_ms=5)
            self.consumer = None
            if follow_events:
                self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                              enable_auto_commit=False, group_id=None)
                parts = self.consumer.partitions_for_topic(settings.events_topic) or set()
                tps = [TopicPartition(settings.events_topic, p) for p in parts]
                self.consumer.assign(tps)
                self.consumer.seek_to_end(*tps)
        except Exception as exc:
            raise KafkaUnavailable(settings.kafka_bootstrap, str(exc)) from exc

    def send(self, cmd: ReportEmergency | DispatchEmergency | CompleteEmergency) -> None:
        self.producer.send(self.settings.commands_topic, key=cmd.region.encode(),
                           value=encode(cmd))

    def events(self, timeout_s: float) -> list:
        if self.consumer is None:
            time.sleep(timeout_s)
            return []
        out = []
        polled = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=1000)
        for batch in polled.values():
            out.extend(decode_event(record.value) for record in batch)
        return out

    def close(self) -> None:
        self.producer.flush(10)
        self.producer.close()
        if self.consumer is not None:
            self.consumer.close()


def simulate(settings: Settings, rate: float, auto: bool = False, count: int | None = None,
             duration: float | None = None, seed: int | None = None) -> int:
    """Run until ``count`` reports or ``duration`` seconds (or Ctrl-C); returns reports sent."""
    network = network_for(settings)
    rng = random.Random(seed)
    client = _Client(settings, follow_events=auto)
    start = time.monotonic()
    next_report = start
    sent = 0
    ours: dict[str, str] = {}  # emergency id -> region
    todo: list[tuple[float, int, object]] = []  # (when, tiebreak, command factory)
    order = itertools.count()
    try:
        while True:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            if (count is None or sent < count) and rate > 0 and now >= next_report:
                report = random_report(network, rng)
                client.send(report)
                ours[report.emergency_id] = report.region
                sent += 1
                next_report += 1.0 / rate
            elif count is not None and sent >= count and (not auto or not ours):
                break  # with --auto, once every report of ours is closed
            while todo and todo[0][0] <= now:
                _, _, cmd = heapq.heappop(todo)
                client.send(cmd)  # type: ignore[arg-type]
            wait = max(0.01, min(next_report - time.monotonic(), 0.2))
            for event in client.events(wait):
                em_id = getattr(getattr(event, "emergency", None), "id", None) \
                    or getattr(event, "emergency_id", None)
                if em_id not in ours:
                    continue
                region = ours[em_id]
                when, after = None, None
                if event.event == "emergency_created":
                    when = rng.uniform(*DISPATCH_AFTER_S)
                    after = DispatchEmergency(region=region, emergency_id=em_id,
                                              issued_by="simulator")
                elif event.event == "command_rejected" and event.command_kind == \
                        "dispatch_emergency":
                    when = RETRY_AFTER_S
                    after = DispatchEmergency(region=region, emergency_id=em_id,
                                              issued_by="simulator")
                elif event.event == "emergency_updated" and event.action == "on_scene":
                    when = rng.uniform(*COMPLETE_AFTER_S)
                    after = CompleteEmergency(region=region, emergency_id=em_id,
                                              issued_by="simulator")
                elif event.event == "emergency_updated" and event.action in (
                        "completed", "cancelled"):
                    ours.pop(em_id, None)
                if after is not None and when is not None:
                    heapq.heappush(todo, (time.monotonic() + when, next(order), after))
            client.producer.flush(5)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    log.info("simulator sent %d reports", sent)
    return sent
