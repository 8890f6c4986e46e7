"""The replay page in real Chromium against the real stack: a window of the event log,
replayed onto the read-only dashboard, ends where the live state was at the window's end;
pause and resume (Space) neither lose nor repeat a message."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import wait_for
from tests.views.conftest import FLEET_SIZE, LiveSite, Requests
from tests.views.pixels import AVAILABLE, DISPATCHED, PENDING, ROAD, assert_map_shows

pytestmark = [pytest.mark.browser, pytest.mark.kafka, pytest.mark.slow]

LIVE = 20_000  # ms
UNTRUSTED = '<img src=x onerror="window.__xss=1">gas smell <b>in</b> the stairwell'


def statuses(state: dict) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {e["id"]: e["status"] for e in state["emergencies"]},
        {u["id"]: u["status"] for u in state["units"]},
    )


def page_statuses(page: Page) -> tuple[dict[str, str], dict[str, str]]:
    emergencies, units = page.evaluate("""() => [
        Object.fromEntries([...document.querySelectorAll('.incident[data-id]')]
            .map((n) => [n.dataset.id, n.dataset.status])),
        Object.fromEntries([...document.querySelectorAll('#unit-rows tr[data-unit]')]
            .map((n) => [n.dataset.unit, n.dataset.status]))]""")
    return emergencies, units


def replay_stat(page: Page, name: str) -> int:
    return page.evaluate(f"window.dispatchwire.replay.{name}")


def wait_until_shown(page: Page, expected: tuple[dict, dict]) -> None:
    """The replay has ended; the board is drawn on the next frame."""
    status = page.locator("#replay-status")
    expect(status).to_have_attribute("data-phase", "ended", timeout=LIVE)
    expect(page.locator(".incident[data-id]")).to_have_count(len(expected[0]), timeout=LIVE)
    expect(page.locator("#unit-rows tr")).to_have_count(FLEET_SIZE)


def test_replay_ends_with_the_state_at_the_window_end_and_pauses_and_resumes(
    site: LiveSite, new_context, requests_seen: Requests, artifacts_dir: Path
) -> None:
    # A few incidents, through the API, as a dispatcher would have handled them.
    fire = site.report(
        type="fire", priority=1, lat=60.1745, lon=24.9415, description="kitchen fire, third floor"
    )
    site.command(fire, "dispatch")
    site.command(fire, "complete")
    # the served area's far corner (points outside it are refused, issue 11 item 7)
    far = site.report(type="medical", priority=2, lat=60.1791, lon=24.9353, description=UNTRUSTED)
    site.command(far, "dispatch")  # its unit is still driving at the window's end
    mistake = site.report(
        type="traffic",
        priority=4,
        lat=60.1690,
        lon=24.9380,
        description="minor collision, no injuries",
    )
    site.command(mistake, "cancel")
    waiting = site.report(
        type="police", priority=3, lat=60.1760, lon=24.9500, description="noise complaint"
    )
    final = {fire: "COMPLETED", far: "ASSIGNED", mistake: "CANCELLED", waiting: "PENDING"}
    wait_for(
        lambda: statuses(site.state())[0] == final,
        timeout=30,
        interval=0.2,
        message="the incidents' final statuses in /api/state",
    )
    wait_for(
        lambda: (
            "DISPATCHED"
            not in [u["status"] for u in site.state()["units"] if u["emergency_id"] == fire]
        ),
        timeout=30,
        interval=0.2,
        message="the fire engine to be free again",
    )
    expected = statuses(site.state())
    far_unit = site.emergency(far)["assigned_unit_id"]
    assert expected[1][far_unit] == "DISPATCHED"

    # The page's default window is the last hour up to now: it holds all of the above.
    page = new_context().new_page()
    response = page.goto(site.base_url + "/replay")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    expect(page.locator("#replay-banner")).to_have_text("REPLAY")
    expect(page.locator("#map")).to_have_attribute("data-ready", "1", timeout=LIVE)
    expect(page.locator("#replay-status")).to_have_attribute("data-phase", "idle")

    # 1. As fast as possible, in one go.
    page.select_option("#replay-speed", "max")
    page.click("#replay-play")
    wait_until_shown(page, expected)
    assert page_statuses(page) == expected
    whole = replay_stat(page, "received")
    assert whole == replay_stat(page, "windowEvents") > FLEET_SIZE
    expect(page.locator("#map")).to_have_attribute("data-layer_routes", "1")
    expect(page.locator("#map")).to_have_attribute("data-layer_emergencies", "2")
    # Drawn, not only fed: streets, the waiting incident, the free units, the route.
    assert_map_shows(
        page,
        path=str(artifacts_dir / "views-replay-map.png"),
        road=ROAD,
        pending=PENDING,
        available=AVAILABLE,
        dispatched=DISPATCHED,
    )
    assert page.locator("#timebar").input_value() == page.locator("#timebar").get_attribute("max")
    # Read-only: no command buttons anywhere, not even for the pending incident.
    page.locator(f'.incident[data-id="{waiting}"]').click()
    expect(page.locator("#details")).to_be_visible()
    assert page.locator("button[data-action], #override-unit").count() == 0
    # Untrusted text stays text.
    expect(page.locator(f'.incident[data-id="{far}"] .description')).to_have_text(UNTRUSTED)
    assert page.locator(".incident img").count() == 0
    assert page.evaluate("window.__xss") is None

    # 2. Again from the start at 1x; Space pauses once the fleet is on the board...
    page.select_option("#replay-speed", "1")
    page.click("#replay-restart")
    page.wait_for_function(
        f"() => window.dispatchwire.replay.received >= {FLEET_SIZE}", timeout=LIVE
    )
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Space")
    status = page.locator("#replay-status")
    expect(status).to_have_attribute("data-phase", "paused")
    assert page.evaluate("window.dispatchwire.replay.connected") is False
    paused_at = replay_stat(page, "received")
    assert FLEET_SIZE <= paused_at < whole, (paused_at, whole)
    bar = page.locator("#timebar")
    low, high = float(bar.get_attribute("min")), float(bar.get_attribute("max"))
    assert low < float(bar.input_value()) < high
    expect(status).to_contain_text("Paused at")
    expect(page.locator("#replay-play")).to_have_text("Resume")
    page.screenshot(path=str(artifacts_dir / "views-replay-paused.png"))

    # ...and resumes, at full speed, from the position of the ids it has seen.
    page.select_option("#replay-speed", "max")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Space")
    wait_until_shown(page, expected)
    assert page_statuses(page) == expected
    assert replay_stat(page, "received") == whole  # nothing lost, nothing twice
    streams = [u for u in requests_seen.urls if "/api/replay/stream" in u]
    assert len(streams) == 3
    assert "from_position=" in streams[-1] and "to_position=" in streams[-1]

    page.locator(f'.incident[data-id="{far}"]').click()
    expect(page.locator("#details .decision")).to_contain_text("ETA")
    page.screenshot(path=str(artifacts_dir / "views-replay.png"))

    # 3. The time bar jumps: Home goes to the window's start (empty: these topics are new),
    # shown paused; Space plays on from there to the same end.
    page.locator("#timebar").focus()
    page.keyboard.press("Home")
    expect(status).to_have_attribute("data-phase", "paused", timeout=LIVE)
    expect(page.locator("#unit-rows tr")).to_have_count(0)
    page.keyboard.press("Space")
    wait_until_shown(page, expected)
    assert page_statuses(page) == expected
    assert replay_stat(page, "received") == whole

    # The live state did not change meanwhile: the window's end state is the one compared.
    assert statuses(site.state()) == expected
    assert requests_seen.outside(site.base_url) == []
    # Nothing went wrong on the page (the bundle's WebAssembly probe aside, see views.pages).
    assert [e for e in requests_seen.console_errors if "wasm" not in e.lower()] == []
