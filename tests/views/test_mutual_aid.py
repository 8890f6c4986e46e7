"""Mutual aid on the dashboard (issue 15), in real Chromium against the real stack: an
emergency whose own region has no free ambulance is dispatched from the dashboard and gets
another region's unit, and the details say why."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from schemas.geo import load_network
from tests.views.conftest import LiveSite
from tests.views.test_live_pages import LIVE, incident, open_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.kafka, pytest.mark.slow]

AT = (60.1712, 24.9440)  # the default report point of LiveSite.report


def test_cross_region_dispatch_shows_its_explanation(
    site: LiveSite, new_context, artifacts_dir: Path
) -> None:
    region = load_network().region_for(*AT)
    own = [
        u["id"] for u in site.state()["units"] if u["region"] == region and u["type"] == "ambulance"
    ]
    assert own, region
    for unit_id in own:  # the region's own ambulances are out of service
        response = site.http.post(f"/api/units/{unit_id}/status", json={"status": "OUT_OF_SERVICE"})
        assert response.status_code == 200, response.text

    dashboard = open_dashboard(new_context(), site)
    emergency_id = site.report(type="medical", priority=1, lat=AT[0], lon=AT[1])
    row = incident(dashboard, emergency_id)
    expect(row).to_have_attribute("data-status", "PENDING", timeout=LIVE)
    row.click()
    row.locator('button[data-action="dispatch"]').click()

    expect(row).to_have_attribute("data-status", "ASSIGNED", timeout=LIVE)
    assigned = site.emergency(emergency_id)["assigned_unit_id"]
    assert assigned not in own
    lender = site.unit(assigned)
    assert lender is not None and lender["region"] != region
    decision = dashboard.locator("#details .decision")
    expect(decision.locator(".explanation")).to_contain_text("mutual aid", timeout=LIVE)
    expect(decision.locator(".explanation")).to_contain_text("closest by road")
    chosen = decision.locator(".candidates tbody tr.chosen")
    expect(chosen).to_have_attribute("data-cross-region", "true")
    expect(chosen).to_contain_text(f"{lender['region']} (mutual aid)")
    expect(dashboard.locator(f'#unit-rows tr[data-unit="{assigned}"]')).to_have_attribute(
        "data-status", "DISPATCHED", timeout=LIVE
    )
    dashboard.screenshot(path=str(artifacts_dir / "views-dashboard-mutual-aid.png"))
