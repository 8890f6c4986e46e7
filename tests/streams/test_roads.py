"""The committed road network, the regions over it, and routing on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.geo import DEFAULT_NETWORK_FILE, haversine_m, load_network, region_for, region_ids
from streams.roadgraph import build_network, bundled_extract, write_network
from streams.routing import GraphRouter


def test_committed_network_is_central_helsinki_with_attribution():
    net = load_network()
    assert len(net.nodes) > 1000 and len(net.edges) > 1000 and len(net.paths) > 500
    assert "OpenStreetMap" in net.attribution
    assert "ODbL" in (DEFAULT_NETWORK_FILE.parent / "ATTRIBUTION.md").read_text()
    south, west, north, east = net.bbox
    assert 60.1 < south < north < 60.2 and 24.9 < west < east < 25.0
    assert all(len(p) >= 2 for p in net.road_paths())


@pytest.mark.parametrize(
    ("lat", "lon", "region"),
    [
        (60.178, 24.937, "hki-nw"),
        (60.178, 24.952, "hki-ne"),
        (60.165, 24.937, "hki-sw"),
        (60.165, 24.952, "hki-se"),
        (10.0, 10.0, "hki-sw"),
    ],
)
def test_region_for(lat, lon, region):
    assert region_for(lat, lon) == region


def test_regions_and_service_area():
    assert region_ids() == ["hki-nw", "hki-ne", "hki-sw", "hki-se"]
    net = load_network()
    assert net.in_service_area(60.17, 24.944) and not net.in_service_area(60.0, 24.944)


def test_routes_follow_streets_and_respect_speeds():
    router = GraphRouter(load_network())
    a, b = (60.1757576, 24.9421563), (60.1660, 24.9500)
    route = router.route(a, b)
    straight = haversine_m(*a, *b)
    assert route is not None and route.distance_m > straight  # streets, not a beeline
    assert route.points[0] == a and route.points[-1] == b
    assert 1.0 < route.distance_m / route.duration_s < 50 / 3.6 + 0.01
    back = router.route(b, a)
    assert back is not None and back.points[-1] == a


def test_build_from_an_osm_extract(tmp_path: Path):
    doc = build_network(bundled_extract(), "helsinki", "hki")
    out = write_network(doc, tmp_path / "roads.json.gz")
    rebuilt = load_network(out)
    assert rebuilt.region_for(60.178, 24.937) == "hki-nw"
    assert out.read_bytes() == DEFAULT_NETWORK_FILE.read_bytes()  # the committed file is current
