"""The API serves the area of the network every part routes on (``DISPATCHWIRE_OSM_FILE``),
not always Helsinki: a report's region and the 422 for a point outside, and the served area
in ``/openapi.json``. Before, the API took both from the default (Helsinki) network, so a
deployment for another area refused every report there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from api.commands import region_for_report
from api.http import ApiError
from dispatchwire.settings import Settings
from schemas.requests import ReportRequest
from tests.api.helpers import RunningApi
from tests.networks import moved_network

NORTH_BY = 1.0  # degrees of latitude between Helsinki and the other area
HELSINKI = (60.1668, 24.9480)
ELSEWHERE = (HELSINKI[0] + NORTH_BY, HELSINKI[1])


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    return moved_network(tmp_path / "roads-elsewhere.json.gz", NORTH_BY)


def report(point: tuple[float, float]) -> ReportRequest:
    return ReportRequest(type="fire", priority=2, lat=point[0], lon=point[1])


def test_a_report_is_placed_on_the_configured_network(elsewhere: Path) -> None:
    there = Settings(osm_file=elsewhere)
    assert region_for_report(report(ELSEWHERE), there) == region_for_report(
        report(HELSINKI), Settings()
    )
    with pytest.raises(ApiError) as refused:
        region_for_report(report(HELSINKI), there)
    assert refused.value.status == 422
    assert "elsewhere" in refused.value.fields[0]["reason"]
    with pytest.raises(ApiError):
        region_for_report(report(ELSEWHERE), Settings())  # the default network: Helsinki


@pytest.mark.kafka
def test_the_api_serves_the_configured_area(
    api_settings: Callable[..., Settings],
    running_api: Callable[..., RunningApi],
    elsewhere: Path,
) -> None:
    api = running_api(api_settings(osm_file=elsewhere))
    refused = api.post(
        "/api/emergencies", json={"type": "fire", "lat": HELSINKI[0], "lon": HELSINKI[1]}
    )
    assert refused.status_code == 422, refused.text
    assert "elsewhere" in refused.json()["fields"][0]["reason"]
    lat = api.get("/openapi.json").json()["components"]["schemas"]["ReportRequest"]
    lat = lat["properties"]["lat"]
    assert lat["minimum"] > HELSINKI[0] and lat["maximum"] >= ELSEWHERE[0]
