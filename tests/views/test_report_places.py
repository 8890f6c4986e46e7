"""Finding a place on the report page without coordinates (issue 12, item 8): the offline
street search and "use my location", in real Chromium against the real page routes; and
the street index itself, rebuilt from the OpenStreetMap extract the router uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dispatchwire.settings import Settings
from schemas import geo
from tests.views.closing_site import ClosingSite
from tests.views.pixels import PICKED, ROAD, assert_map_shows
from tests.views.test_mapspec import Client
from views.streets import DEFAULT_INDEX_FILE, build_street_index, bundled_extract

HERE = {"latitude": 60.1699, "longitude": 24.9384}  # the railway station square


def committed_streets() -> dict[str, dict]:
    index = json.loads(DEFAULT_INDEX_FILE.read_text(encoding="utf-8"))
    return {s["name"]: s for s in index["streets"]}


def test_the_street_index_is_the_extract_s_named_streets_inside_the_service_area() -> None:
    streets = committed_streets()
    assert {"Mannerheimintie", "Aleksanterinkatu", "Lönnrotinkatu"} <= set(streets)
    network = geo.load_network()
    for street in streets.values():
        assert network.in_service_area(street["lat"], street["lon"]), street
        south, west, north, east = street["bbox"]
        assert south <= street["lat"] <= north and west <= street["lon"] <= east
    # The committed file is what the build makes of the extract (how to rebuild it:
    # views/streets.py).
    assert build_street_index(bundled_extract())["streets"] == list(streets.values())
    served = Client(Settings()).get("/views/streets.json")
    assert served.status_code == 200
    assert [s["name"] for s in served.json()["streets"]] == list(streets)


@pytest.fixture
def report_site() -> Iterator[ClosingSite]:
    site = ClosingSite(Settings()).start()
    yield site
    site.stop()


def open_report(browser, site: ClosingSite, **context_options):
    context = browser.new_context(viewport={"width": 1440, "height": 860}, **context_options)
    page = context.new_page()
    page.goto(site.base_url + "/report")
    expect(page.locator("#map")).to_have_attribute("data-ready", "1", timeout=20_000)
    expect(page.locator("#f-street")).to_have_attribute(
        "data-streets", str(len(committed_streets())), timeout=20_000
    )
    return context, page


@pytest.mark.browser
def test_a_reporter_finds_a_street_by_name_and_the_map_marks_it(
    report_site: ClosingSite, browser, artifacts_dir: Path
) -> None:
    context, page = open_report(browser, report_site)
    try:
        # Typed without the accents, as on a foreign keyboard.
        page.locator("#f-street").press_sequentially("lonnrot")
        results = page.locator("#street-results button")
        expect(page.locator('#street-results button[data-street="Lönnrotinkatu"]')).to_be_visible()
        page.locator("#f-street").fill("")
        page.locator("#f-street").press_sequentially("mannerh")
        expect(results).not_to_have_count(0)
        page.screenshot(path=str(artifacts_dir / "views-report-street-search.png"))
        page.locator('#street-results button[data-street="Mannerheimintie"]').click()
        street = committed_streets()["Mannerheimintie"]
        expect(page.locator("#f-lat")).to_have_value(f"{street['lat']:.6f}")
        expect(page.locator("#f-lon")).to_have_value(f"{street['lon']:.6f}")
        expect(page.locator("#street-results")).to_be_hidden()
        expect(page.locator("#place-status")).to_contain_text("Mannerheimintie")
        expect(page.locator("#map")).to_have_attribute("data-layer_emergencies", "1")
        assert_map_shows(
            page,
            path=str(artifacts_dir / "views-report-street-marker.png"),
            road=ROAD,
            picked=PICKED,
        )
        # Enter takes the first match and never sends the report.
        page.locator("#f-street").fill("")
        page.locator("#f-street").press_sequentially("aleksanterink")
        expect(results.first).to_have_text("Aleksanterinkatu")
        page.locator("#f-street").press("Enter")
        expect(page.locator("#f-lat")).to_have_value(
            f"{committed_streets()['Aleksanterinkatu']['lat']:.6f}"
        )
        assert page.url.endswith("/report")
    finally:
        context.close()


@pytest.mark.browser
def test_use_my_location_fills_in_the_browser_position(
    report_site: ClosingSite, browser, artifacts_dir: Path
) -> None:
    context, page = open_report(browser, report_site, geolocation=HERE, permissions=["geolocation"])
    try:
        page.click("#use-location")
        expect(page.locator("#f-lat")).to_have_value(f"{HERE['latitude']:.6f}")
        expect(page.locator("#f-lon")).to_have_value(f"{HERE['longitude']:.6f}")
        expect(page.locator("#place-status")).to_contain_text("where you are")
        expect(page.locator("#map")).to_have_attribute("data-layer_emergencies", "1")
        page.screenshot(path=str(artifacts_dir / "views-report-my-location.png"))
    finally:
        context.close()


@pytest.mark.browser
def test_use_my_location_refused_says_what_to_do_instead(report_site: ClosingSite, browser) -> None:
    context, page = open_report(browser, report_site, geolocation=HERE)  # no permission
    try:
        page.click("#use-location")
        expect(page.locator("#place-status")).to_contain_text("search a street", timeout=20_000)
        expect(page.locator("#f-lat")).to_have_value("")
    finally:
        context.close()
