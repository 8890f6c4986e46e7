"""Road network files for tests: the committed Helsinki network moved elsewhere, as another
area's network file (``DISPATCHWIRE_OSM_FILE``) would be."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from schemas.geo import DEFAULT_NETWORK_FILE


def moved_network(path: Path, north_by: float, name: str = "elsewhere") -> Path:
    """The Helsinki network ``north_by`` degrees of latitude further north, at ``path``."""
    doc = json.loads(gzip.decompress(DEFAULT_NETWORK_FILE.read_bytes()))
    doc["name"] = name
    south, west, north, east = doc["bbox"]
    doc["bbox"] = [south + north_by, west, north + north_by, east]
    doc["nodes"] = [[lat + north_by, lon] for lat, lon in doc["nodes"]]
    for edge in doc["edges"]:
        if len(edge) > 5:
            edge[5] = [[lat + north_by, lon] for lat, lon in edge[5]]
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    return path
