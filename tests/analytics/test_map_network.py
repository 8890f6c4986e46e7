"""The exported map draws the streets of the configured network (``DISPATCHWIRE_OSM_FILE``),
not always Helsinki's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.geo import load_network
from tests.analytics.conftest import run_cli, stored_snapshot
from tests.analytics.test_queries import known_story
from tests.networks import moved_network

pytestmark = pytest.mark.kafka

NORTH_BY = 1.0


def roads_drawn(page: Path) -> list[list[list[float]]]:
    html = page.read_text()
    start = html.index("jsonInput: ") + len("jsonInput: ")
    spec, _ = json.JSONDecoder().raw_decode(html[start:])
    return next(layer["data"] for layer in spec["layers"] if layer["id"] == "roads")


def test_the_exported_map_draws_the_configured_networks_streets(
    make_settings, tmp_path: Path
) -> None:
    network = moved_network(tmp_path / "roads-elsewhere.json.gz", NORTH_BY)
    settings = make_settings(osm_file=network)
    snap = stored_snapshot(settings, known_story().events, tmp_path / "snap.duckdb")
    page = tmp_path / "map.html"
    run_cli(settings, "export-map", str(snap), str(page))
    south = load_network(network).bbox[0]
    lats = [lat for row in roads_drawn(page) for _, lat in row["path"]]
    assert lats and min(lats) >= south - 1e-6, (min(lats), south)  # none of Helsinki's
