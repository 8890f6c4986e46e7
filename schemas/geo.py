"""The road network, the dispatch regions over it, and ``region_for(lat, lon)``.

The network is a compact file derived from OpenStreetMap (``streams/roadgraph.py`` builds
it with pyrosm; the central-Helsinki one is committed in ``schemas/data``). This module
only reads it, with the standard library, so every part can use it without pyrosm.

Regions are a 2x2 grid over the network's bounding box (``hki-nw``, ``hki-ne``,
``hki-sw``, ``hki-se`` for Helsinki). A region is the Kafka key of its commands and events.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_NETWORK_FILE = Path(__file__).resolve().parent / "data" / "roads-helsinki.json.gz"
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)"
EARTH_RADIUS_M = 6_371_008.8
# How far outside the network's bounding box a report still counts as in the service area.
SERVICE_MARGIN_M = 300.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial compass bearing from point 1 to point 2 (0 = north, 90 = east)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360.0) % 360.0


@dataclass(frozen=True)
class Region:
    id: str
    name: str
    south: float
    west: float
    north: float
    east: float

    @property
    def center(self) -> tuple[float, float]:
        return ((self.south + self.north) / 2, (self.west + self.east) / 2)

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east


@dataclass(frozen=True)
class Edge:
    """A directed-or-not road segment between two node indices."""

    u: int
    v: int
    length_m: float
    speed_kmh: float
    oneway: bool
    # intermediate [lat, lon] points between u and v, in u -> v order
    shape: tuple[tuple[float, float], ...] = ()

    @property
    def travel_s(self) -> float:
        return self.length_m / (self.speed_kmh / 3.6)


@dataclass(frozen=True)
class RoadNetwork:
    name: str
    attribution: str
    bbox: tuple[float, float, float, float]  # south, west, north, east
    nodes: tuple[tuple[float, float], ...]  # [lat, lon] by node index
    edges: tuple[Edge, ...]
    routable: frozenset[int]  # nodes of the largest strongly connected part
    paths: tuple[tuple[int, ...], ...]  # the ways, as node chains, for drawing
    region_prefix: str = "hki"
    regions: tuple[Region, ...] = field(default=())

    def region(self, region_id: str) -> Region:
        for region in self.regions:
            if region.id == region_id:
                return region
        raise KeyError(region_id)

    def region_for(self, lat: float, lon: float) -> str:
        """The region whose cell holds the point, or the nearest cell for a point outside."""
        south, west, north, east = self.bbox
        row = "n" if lat >= (south + north) / 2 else "s"
        col = "e" if lon >= (west + east) / 2 else "w"
        return f"{self.region_prefix}-{row}{col}"

    def in_service_area(self, lat: float, lon: float) -> bool:
        south, west, north, east = self.bbox
        dlat = SERVICE_MARGIN_M / 111_320.0
        dlon = dlat / max(0.01, math.cos(math.radians(lat)))
        return south - dlat <= lat <= north + dlat and west - dlon <= lon <= east + dlon

    def road_paths(self) -> list[list[list[float]]]:
        """Every way as a ``[[lon, lat], ...]`` path, the order deck.gl's PathLayer wants."""
        return [[[self.nodes[i][1], self.nodes[i][0]] for i in chain] for chain in self.paths]


# How the street layer is drawn, by the live pages (``views.mapspec``) and the offline
# export map (``analytics.maps``) alike.
ROAD_COLOR = [70, 82, 108]


def road_layer_data(network: RoadNetwork) -> list[dict[str, Any]]:
    """``[{"path": [[lon, lat], ...]}, ...]``: every way of the network, rounded to ~10 cm,
    as the rows of a deck.gl PathLayer."""
    return [
        {"path": [[round(lon, 6), round(lat, 6)] for lon, lat in path]}
        for path in network.road_paths()
    ]


def _grid_regions(
    name: str, prefix: str, bbox: tuple[float, float, float, float]
) -> tuple[Region, ...]:
    south, west, north, east = bbox
    mid_lat, mid_lon = (south + north) / 2, (west + east) / 2
    label = name.capitalize()
    return (
        Region(f"{prefix}-nw", f"{label} north-west", mid_lat, west, north, mid_lon),
        Region(f"{prefix}-ne", f"{label} north-east", mid_lat, mid_lon, north, east),
        Region(f"{prefix}-sw", f"{label} south-west", south, west, mid_lat, mid_lon),
        Region(f"{prefix}-se", f"{label} south-east", south, mid_lon, mid_lat, east),
    )


def load_network(path: Path | None = None) -> RoadNetwork:
    """Read a network file (default: central Helsinki); cached per path."""
    return _load(str(path or DEFAULT_NETWORK_FILE))


@functools.lru_cache(maxsize=4)
def _load(path: str) -> RoadNetwork:
    with gzip.open(path, "rb") as fh:
        doc = json.loads(fh.read())
    bbox = tuple(doc["bbox"])
    edges = tuple(
        Edge(
            e[0],
            e[1],
            e[2],
            e[3],
            bool(e[4]),
            tuple((p[0], p[1]) for p in e[5]) if len(e) > 5 else (),
        )
        for e in doc["edges"]
    )
    return RoadNetwork(
        name=doc["name"],
        attribution=doc.get("attribution", ATTRIBUTION),
        bbox=bbox,
        nodes=tuple((p[0], p[1]) for p in doc["nodes"]),
        edges=edges,
        routable=frozenset(doc["routable"]),
        paths=tuple(tuple(chain) for chain in doc["paths"]),
        region_prefix=doc["region_prefix"],
        regions=_grid_regions(doc["name"], doc["region_prefix"], bbox),
    )


def area_name(source: Path) -> str:
    """The name an area's derived files are kept under: an OSM extract's or a network
    file's name up to its first dot, lower case, without ``roads-`` (``Tampere.osm.pbf``
    and ``roads-tampere.json.gz`` are both ``tampere``)."""
    return source.name.split(".")[0].lower().removeprefix("roads-")


def derived_network_file(pbf: Path, data_dir: Path) -> Path:
    """Where the network built from OSM extract ``pbf`` is kept (the worker builds it)."""
    return data_dir / f"roads-{area_name(pbf)}.json.gz"


def configured_network(source: Path | None, data_dir: Path) -> RoadNetwork:
    """The network of ``DISPATCHWIRE_OSM_FILE`` (``source``) as every part reads it: a
    ``.json.gz`` network file as it is, an OSM extract by the network derived from it in
    ``data_dir`` (``streams.roadgraph.network_for`` builds that; until it exists, the
    default), nothing: the default (central Helsinki)."""
    if source is None:
        return load_network()
    if source.name.endswith(".json.gz"):
        return load_network(source)
    derived = derived_network_file(source, data_dir)
    if derived.exists():
        return load_network(derived)
    log.warning("no road network derived from %s yet; using the default one", source)
    return load_network()


def region_for(lat: float, lon: float) -> str:
    """The dispatch region of a point on the default (Helsinki) network."""
    return load_network().region_for(lat, lon)


def region_ids() -> list[str]:
    return [region.id for region in load_network().regions]
