"""The seed's four real-time scenarios, in real Chromium against the real stack, plus the
WebSocket fallback, untrusted text, and a page that asks nothing of the internet.

Pages are driven as people use them (forms, buttons); the API is called directly only to
stand in for another person (a reporter elsewhere). Waits are on what the page shows.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.views.conftest import AUTHORITY, LiveSite, Requests
from tests.views.pixels import AVAILABLE, DISPATCHED, PICKED, ROAD, assert_map_shows

pytestmark = [pytest.mark.browser, pytest.mark.kafka, pytest.mark.slow]

LIVE = 20_000  # ms: how long a live update may take to show (worker + Kafka + stream)


def open_dashboard(context, site: LiveSite) -> Page:
    page = context.new_page()
    page.goto(site.base_url + "/")
    expect(page.locator("#live-indicator")).to_have_attribute("data-phase", "live", timeout=LIVE)
    expect(page.locator("#unit-rows tr")).to_have_count(16, timeout=LIVE)
    return page


def toasts_shown(page: Page, title: str) -> int:
    """How many toasts with ``title`` in their title the page has shown (from its history:
    a toast leaves the screen after a few seconds, sooner than a loaded machine checks)."""
    return page.evaluate(
        "(t) => window.dispatchwire.toasts.filter((x) => x.title.includes(t)).length", title
    )


def expect_one_toast(page: Page, title: str) -> None:
    page.wait_for_function(
        "(t) => window.dispatchwire.toasts.some((x) => x.title.includes(t))",
        arg=title,
        timeout=LIVE,
    )
    assert toasts_shown(page, title) == 1, title


def incident(page: Page, emergency_id: str):
    return page.locator(f'.incident[data-id="{emergency_id}"]')


def map_layer_count(page: Page, layer: str) -> int:
    return int(page.locator("#map").get_attribute(f"data-layer_{layer}") or 0)


def test_report_in_one_tab_appears_on_the_dashboard_without_refresh(
    site: LiveSite, new_context, requests_seen: Requests, artifacts_dir: Path
) -> None:
    # The dispatcher enters the token once; it is kept for the next visit.
    dispatcher = new_context(token=None)
    dashboard = dispatcher.new_page()
    dashboard.goto(site.base_url + "/")
    dashboard.locator("#token-dialog input").fill(AUTHORITY)
    dashboard.locator("#token-dialog button[type=submit]").click()
    expect(dashboard.locator("#live-indicator")).to_have_attribute(
        "data-transport", "sse", timeout=LIVE
    )
    expect(dashboard.locator("#unit-rows tr")).to_have_count(16, timeout=LIVE)
    dashboard.evaluate("window.__sameDocument = true")

    reporter = new_context(token=None).new_page()
    reporter.goto(site.base_url + "/report")
    expect(reporter.locator("#map")).to_have_attribute("data-ready", "1", timeout=LIVE)
    # An out-of-range latitude is refused with the reason next to the field.
    reporter.select_option("#f-type", "fire")
    reporter.select_option("#f-priority", "1")
    reporter.fill("#f-lat", "95")
    reporter.fill("#f-lon", "24.944")
    reporter.fill("#f-description", "smoke pouring out of a basement window")
    reporter.click("#submit-report")
    expect(reporter.locator('.field-error[data-field="lat"]')).not_to_be_empty()
    expect(reporter.locator("#f-lat")).to_have_attribute("aria-invalid", "true")
    # Picking the spot on the map fills the location in.
    box = reporter.locator("#map").bounding_box()
    reporter.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(reporter.locator("#f-lat")).not_to_have_value("95")
    lat = float(reporter.input_value("#f-lat"))
    assert 60.16 < lat < 60.18
    assert_map_shows(
        reporter, path=str(artifacts_dir / "views-report-map.png"), road=ROAD, picked=PICKED
    )
    reporter.fill("#f-name", "Maija")
    reporter.click("#submit-report")
    reporter.wait_for_url("**/track/*", timeout=LIVE)
    emergency_id = reporter.url.rsplit("/", 1)[-1]
    expect(reporter.locator("#status-badge")).to_have_text("PENDING", timeout=LIVE)

    row = incident(dashboard, emergency_id)
    expect(row).to_be_visible(timeout=LIVE)
    expect(row).to_contain_text("smoke pouring out of a basement window")
    expect(row).to_have_attribute("data-status", "PENDING")
    expect(dashboard.locator("#pending-list .incident").first).to_have_attribute(
        "data-id", emergency_id
    )  # priority 1 heads the queue
    expect_one_toast(dashboard, "New emergency")
    assert dashboard.evaluate("window.__sameDocument") is True  # no reload happened
    assert dispatcher.storage_state()["origins"][0]["localStorage"][0]["value"] == AUTHORITY
    assert requests_seen.outside(site.base_url) == []


def test_dispatch_assigns_a_unit_with_a_toast_and_a_route_on_the_map(
    site: LiveSite, new_context, artifacts_dir: Path
) -> None:
    dashboard = open_dashboard(new_context(), site)
    emergency_id = site.report(
        type="fire", priority=1, lat=60.1745, lon=24.9415, description="kitchen fire, third floor"
    )
    row = incident(dashboard, emergency_id)
    expect(row).to_have_attribute("data-status", "PENDING", timeout=LIVE)

    # Selecting it shows the recommended unit and an override.
    row.click()
    expect(dashboard.locator("#details .recommendation")).to_contain_text("Recommended")
    expect(dashboard.locator("#override-unit option")).not_to_have_count(1)
    row.locator('button[data-action="dispatch"]').click()

    expect(row).to_have_attribute("data-status", "ASSIGNED", timeout=LIVE)
    expect(dashboard.locator(f'#active-list .incident[data-id="{emergency_id}"]')).to_be_visible()
    unit_id = site.emergency(emergency_id)["assigned_unit_id"]
    assert unit_id and unit_id.endswith(("fire-1",)), unit_id
    expect(dashboard.locator(f'#unit-rows tr[data-unit="{unit_id}"]')).to_have_attribute(
        "data-status", "DISPATCHED", timeout=LIVE
    )
    expect_one_toast(dashboard, "Assigned")
    expect_one_toast(dashboard, "Unit dispatched")
    expect(dashboard.locator("#map")).to_have_attribute("data-layer_routes", "1", timeout=LIVE)
    # Why this unit: the worker's decision, with the candidates it weighed.
    expect(dashboard.locator("#details .decision")).to_contain_text("ETA", timeout=LIVE)
    expect(dashboard.locator("#details .candidates tbody tr")).not_to_have_count(0)

    # A manual reconnect resumes by last id: no duplicated rows or toasts.
    dashboard.evaluate("window.dispatchwire.live().reconnect()")
    expect(dashboard.locator("#live-indicator")).to_have_attribute(
        "data-phase", "live", timeout=LIVE
    )
    dashboard.wait_for_function("() => window.dispatchwire.state.lastMessageAt > Date.now() - 3000")
    expect(dashboard.locator(f'.incident[data-id="{emergency_id}"]')).to_have_count(1)
    expect_one_toast(dashboard, "Assigned")
    expect(dashboard.locator("#unit-rows tr")).to_have_count(16)
    # Drawn, not only fed: streets, the route and assigned incident, the free units.
    assert_map_shows(
        dashboard,
        path=str(artifacts_dir / "views-dashboard-map.png"),
        road=ROAD,
        dispatched=DISPATCHED,
        available=AVAILABLE,
    )
    dashboard.screenshot(path=str(artifacts_dir / "views-dashboard-dispatched.png"))


def test_complete_frees_the_unit_stops_tracking_and_toasts(
    site: LiveSite, new_context, artifacts_dir: Path
) -> None:
    emergency_id = site.report(
        type="medical", priority=2, lat=60.1668, lon=24.9480, description="cyclist down, conscious"
    )
    site.command(emergency_id, "dispatch")
    unit_id = site.emergency(emergency_id)["assigned_unit_id"]

    # The reporter follows it on the shareable page, without a token: by its own stream
    # (/api/emergencies/{id}/stream), or by polling the GET where that stream is blocked.
    reads: dict[str, list[str]] = {"stream": [], "blocked": []}
    view = f"/api/emergencies/{emergency_id}"
    tracking = new_context(token=None).new_page()
    tracking.on("request", lambda r: reads["stream"].append(urlsplit(r.url).path))
    tracking.goto(f"{site.base_url}/track/{emergency_id}")
    expect(tracking.locator("#status-badge")).to_have_text("ASSIGNED", timeout=LIVE)
    expect(tracking.locator("#fact-unit")).not_to_have_text("—")
    expect(tracking.locator("#live-indicator")).to_have_attribute("data-transport", "sse")
    blocked_context = new_context(token=None)
    blocked_context.route("**/stream*", lambda route: route.abort())
    blocked = blocked_context.new_page()
    blocked.on("request", lambda r: reads["blocked"].append(urlsplit(r.url).path))
    blocked.goto(f"{site.base_url}/track/{emergency_id}")
    expect(blocked.locator("#live-indicator")).to_have_attribute(
        "data-transport", "poll", timeout=LIVE
    )
    expect(blocked.locator("#status-badge")).to_have_text("ASSIGNED")
    assert_map_shows(
        tracking, path=str(artifacts_dir / "views-track-map.png"), road=ROAD, assigned=DISPATCHED
    )  # the incident (ASSIGNED) and its unit share a colour

    dashboard = open_dashboard(new_context(), site)
    row = incident(dashboard, emergency_id)
    expect(row).to_have_attribute("data-status", "ASSIGNED", timeout=LIVE)
    expect(dashboard.locator("#map")).to_have_attribute("data-layer_routes", "1", timeout=LIVE)
    row.locator('button[data-action="complete"]').click()

    expect(row).to_have_attribute("data-status", "COMPLETED", timeout=LIVE)
    expect(dashboard.locator(f'#closed-list .incident[data-id="{emergency_id}"]')).to_be_visible()
    # The unit drives back to its station (RETURNING on the board, unless it was still at
    # the station), then is AVAILABLE there.
    unit_row = dashboard.locator(f'#unit-rows tr[data-unit="{unit_id}"]')
    expect(unit_row).to_have_attribute(
        "data-status", re.compile("^(RETURNING|AVAILABLE)$"), timeout=LIVE
    )
    expect(dashboard.locator("#map")).to_have_attribute("data-layer_routes", "0")
    expect_one_toast(dashboard, "Emergency completed")
    expect(unit_row).to_have_attribute("data-status", "AVAILABLE", timeout=4 * LIVE)
    expect_one_toast(dashboard, "Unit available")

    for page, transport in ((tracking, "sse"), (blocked, "poll")):
        expect(page.locator("#status-badge")).to_have_text("COMPLETED", timeout=LIVE)
        expect(page.locator('#timeline li[data-step="COMPLETED"]')).to_have_class("done current")
        # still following it, until it moves to the history (test_tracking_archived.py)
        expect(page.locator("#live-indicator")).to_have_attribute("data-transport", transport)
    # The streaming page read its report once, on load (polling reads it every 2 s); the
    # blocked one read it on load and polled it.
    assert reads["stream"].count(view) == 1, reads["stream"]
    assert reads["stream"].count(view + "/stream") >= 1
    assert reads["blocked"].count(view) >= 2, reads["blocked"]


def test_several_tabs_update_together(site: LiveSite, new_context, artifacts_dir: Path) -> None:
    first, second = new_context(), new_context()
    dashboards = [
        open_dashboard(first, site),
        open_dashboard(first, site),
        open_dashboard(second, site),
    ]
    units = second.new_page()
    units.goto(site.base_url + "/units")
    expect(units.locator("#unit-rows tr")).to_have_count(16, timeout=LIVE)

    emergency_id = site.report(
        type="police", priority=1, lat=60.1760, lon=24.9500, description="break-in in progress"
    )
    for page in dashboards:
        expect(incident(page, emergency_id)).to_have_attribute(
            "data-status", "PENDING", timeout=LIVE
        )
    incident(dashboards[2], emergency_id).locator('button[data-action="dispatch"]').click()
    unit_id = None
    for page in dashboards:
        expect(incident(page, emergency_id)).to_have_attribute(
            "data-status", "ASSIGNED", timeout=LIVE
        )
        unit_id = unit_id or site.emergency(emergency_id)["assigned_unit_id"]
        expect(page.locator(f'#unit-rows tr[data-unit="{unit_id}"]')).to_have_attribute(
            "data-status", "DISPATCHED", timeout=LIVE
        )
        expect_one_toast(page, "Assigned")

    # The units map: the route appears and the unit moves along it.
    unit_row = units.locator(f'#unit-rows tr[data-unit="{unit_id}"]')
    expect(unit_row).to_have_attribute("data-status", "DISPATCHED", timeout=LIVE)
    expect(units.locator("#map")).to_have_attribute("data-layer_routes", "1", timeout=LIVE)
    start = unit_row.locator(".pos").inner_text()
    assert_map_shows(
        units,
        path=str(artifacts_dir / "views-units-route-map.png"),
        road=ROAD,
        dispatched=DISPATCHED,
        available=AVAILABLE,
    )
    expect(unit_row.locator(".pos")).not_to_have_text(start, timeout=LIVE)
    units.screenshot(path=str(artifacts_dir / "views-units-map.png"))

    site.command(emergency_id, "complete")
    expect(units.locator("#map")).to_have_attribute("data-layer_routes", "0", timeout=LIVE)
    for page in dashboards:
        expect(incident(page, emergency_id)).to_have_attribute(
            "data-status", "COMPLETED", timeout=LIVE
        )


def test_the_websocket_carries_updates_when_sse_is_blocked(site: LiveSite, new_context) -> None:
    context = new_context()
    context.route("**/api/stream**", lambda route: route.abort())
    dashboard = context.new_page()
    dashboard.goto(site.base_url + "/")
    indicator = dashboard.locator("#live-indicator")
    expect(indicator).to_have_attribute("data-transport", "ws", timeout=LIVE)
    expect(indicator).to_have_attribute("data-phase", "live", timeout=LIVE)
    expect(indicator).to_contain_text("WebSocket")
    expect(dashboard.locator("#unit-rows tr")).to_have_count(16, timeout=LIVE)

    emergency_id = site.report(description="fell down the stairs")
    row = incident(dashboard, emergency_id)
    expect(row).to_have_attribute("data-status", "PENDING", timeout=LIVE)
    row.locator('button[data-action="dispatch"]').click()
    expect(row).to_have_attribute("data-status", "ASSIGNED", timeout=LIVE)
    expect_one_toast(dashboard, "New emergency")
    assert dashboard.evaluate("window.dispatchwire.live().status().transport") == "ws"


def test_untrusted_text_is_shown_as_text(site: LiveSite, new_context) -> None:
    payload = '<img src=x onerror="window.__xss=1"><b>bold</b>'
    name = "<script>window.__xss=2</script>Eve"
    emergency_id = site.report(description=payload, reporter={"name": name, "phone": "+358 40 1"})
    dashboard = open_dashboard(new_context(), site)
    row = incident(dashboard, emergency_id)
    expect(row.locator(".description")).to_have_text(payload, timeout=LIVE)
    row.click()
    expect(dashboard.locator("#details .description")).to_have_text(payload)
    expect(dashboard.locator("#details .reporter-name")).to_have_text(name)
    assert dashboard.locator("#pending-list img, #details img, #details script").count() == 0

    tracking = new_context(token=None).new_page()
    tracking.goto(f"{site.base_url}/track/{emergency_id}")
    expect(tracking.locator("#fact-description")).to_have_text(payload, timeout=LIVE)
    for page in (dashboard, tracking):
        assert page.evaluate("window.__xss") is None


def test_pages_load_only_from_the_server_under_a_strict_csp(
    site: LiveSite, new_context, requests_seen: Requests
) -> None:
    from schemas import geo

    emergency_id = site.report()
    context = new_context()
    for path in ("/", "/units", "/report", f"/track/{emergency_id}"):
        page = context.new_page()
        response = page.goto(site.base_url + path)
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-eval" not in policy and "unsafe-inline" not in policy
        map_node = page.locator("#map")
        expect(map_node).to_have_attribute("data-ready", "1", timeout=LIVE)
        # The real streets, sent once with the spec, and their attribution.
        assert map_node.get_attribute("data-roads") == str(len(geo.load_network().paths))
        expect(page.locator("#map .attribution")).to_contain_text("OpenStreetMap contributors")
    assert requests_seen.outside(site.base_url) == []
    assert sum("base.json" in u for u in requests_seen.urls) == 4  # once per page load
    # The one tolerated report is the bundle's own WebAssembly probe (see views.pages).
    unexpected = [
        e
        for e in requests_seen.console_errors
        if "Content Security Policy" in e and "wasm" not in e.lower()
    ]
    assert unexpected == []


def test_rest_polling_carries_updates_when_sse_and_websocket_both_fail(
    site: LiveSite, new_context
) -> None:
    context = new_context()
    context.route("**/api/stream**", lambda route: route.abort())
    # A WebSocket that is never connected to the server and is closed at once.
    context.route_web_socket("**/ws**", lambda ws: ws.close())
    dashboard = context.new_page()
    dashboard.goto(site.base_url + "/")
    indicator = dashboard.locator("#live-indicator")
    expect(indicator).to_have_attribute("data-transport", "poll", timeout=LIVE)
    expect(indicator).to_have_attribute("data-phase", "live", timeout=LIVE)
    expect(dashboard.locator("#unit-rows tr")).to_have_count(16, timeout=LIVE)

    emergency_id = site.report(description="smoke from a vent")
    row = incident(dashboard, emergency_id)
    expect(row).to_have_attribute("data-status", "PENDING", timeout=LIVE)
    row.locator('button[data-action="dispatch"]').click()
    expect(row).to_have_attribute("data-status", "ASSIGNED", timeout=LIVE)
    assert dashboard.evaluate("window.dispatchwire.live().status().transport") == "poll"
