"""Issue 16, part 2, in the browser: the units page applies a ``unit_locations`` frame
(conflated unit positions, columnar: ``schemas.live``), every unit in it moving on the
board, from one message."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.api.helpers import EventLog
from tests.views.conftest import LiveSite
from tests.views.test_live_pages import LIVE

pytestmark = pytest.mark.browser


def test_the_units_page_moves_every_unit_of_a_frame(site: LiveSite, new_context) -> None:
    page = new_context().new_page()
    page.goto(site.base_url + "/units")
    expect(page.locator("#unit-rows tr")).to_have_count(16, timeout=LIVE)
    page.evaluate(
        """() => {
          window.seenEvents = [];
          window.frameKeys = [];
          window.dispatchwire.state.addEventListener("change", (ev) => {
            window.seenEvents.push(ev.detail.event);
            if (ev.detail.event === "unit_locations") {
              window.frameKeys.push(Object.keys(ev.detail.data).sort());
            }
          });
        }"""
    )
    units = site.state()["units"][:3]
    moved = {u["id"]: (60.1601 + n / 1000, 24.9301 + n / 1000) for n, u in enumerate(units)}
    log = EventLog(site.settings)
    log.autoflush = False
    try:
        for step in (2, 1):  # two positions each, in one burst: the frame has the last
            for unit in units:
                lat, lon = moved[unit["id"]]
                log.location(
                    unit["id"],
                    lat - step / 10_000 + 1 / 10_000,
                    lon,
                    region=unit["region"],
                    version=unit["version"] + 3 - step,
                )
        log.producer.flush()
    finally:
        log.close()
    for unit_id, (lat, lon) in moved.items():
        row = page.locator(f'#unit-rows tr[data-unit="{unit_id}"]')
        expect(row.locator(".pos")).to_have_text(f"{lat:.4f}, {lon:.4f}", timeout=LIVE)
    seen = page.evaluate("window.seenEvents")
    assert "unit_locations" in seen and "unit_location" not in seen, seen
    assert page.evaluate("window.frameKeys")[0] == ["fields", "rows"]
