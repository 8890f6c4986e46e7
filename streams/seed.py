"""``dispatchwire seed``: topics, and stations with units of each type in every region.

Each region gets one station on the road node nearest the middle of its cell, with
2 ambulances, 1 fire engine and 1 police car. Units are registered with ``register_unit``
commands whose ids are derived from the unit id, so seeding twice changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dispatchwire.settings import Settings
from infra import clients
from infra.topics import ensure_topics, kafka_python_partitioner
from schemas import RegisterUnit, UnitType, encode
from schemas.geo import RoadNetwork
from streams.roadgraph import network_for
from streams.routing import GraphRouter

log = logging.getLogger(__name__)

FLEET = (
    (UnitType.AMBULANCE, "amb", 2),
    (UnitType.FIRE_ENGINE, "fire", 1),
    (UnitType.POLICE_CAR, "pol", 1),
)


@dataclass(frozen=True)
class SeedUnit:
    unit_id: str
    callsign: str
    type: UnitType
    region: str
    station: str
    lat: float
    lon: float

    @classmethod
    def numbered(
        cls,
        region: str,
        station: str,
        unit_type: UnitType,
        short: str,
        number: str,
        lat: float,
        lon: float,
    ) -> SeedUnit:
        """Unit ``number`` of its kind in ``region``: id ``hki-nw-amb-1``, callsign ``NW-AMB1``."""
        return cls(
            unit_id=f"{region}-{short}-{number}",
            callsign=f"{region.split('-')[-1].upper()}-{short.upper()}{number.upper()}",
            type=unit_type,
            region=region,
            station=station,
            lat=lat,
            lon=lon,
        )


def fleet(network: RoadNetwork) -> list[SeedUnit]:
    router = GraphRouter(network)
    units = []
    for region in network.regions:
        node = router.nearest_node(*region.center)
        lat, lon = network.nodes[node]
        station = f"{region.id}-station"
        for unit_type, short, count in FLEET:
            for n in range(1, count + 1):
                units.append(
                    SeedUnit.numbered(region.id, station, unit_type, short, str(n), lat, lon)
                )
    return units


def register_commands(units: list[SeedUnit]) -> list[RegisterUnit]:
    return [
        RegisterUnit(
            command_id=f"seed-{u.unit_id}",
            region=u.region,
            unit_id=u.unit_id,
            callsign=u.callsign,
            type=u.type,
            lat=u.lat,
            lon=u.lon,
            station=u.station,
            issued_by="seed",
        )
        for u in units
    ]


def seed(settings: Settings) -> list[SeedUnit]:
    ensure_topics(settings)
    units = fleet(network_for(settings))
    with clients.kafka_errors(settings, "connecting the seed producer"):
        producer = clients.producer(
            settings, acks="all", partitioner=kafka_python_partitioner(settings)
        )
    try:
        for cmd in register_commands(units):
            producer.send(settings.commands_topic, key=cmd.region.encode(), value=encode(cmd))
        producer.flush(30)
    finally:
        producer.close()
    log.info("registered %d units", len(units))
    return units
