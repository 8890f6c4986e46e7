"""A closed report in the live window and after it moved to history (issue 16), in Chromium:
the dashboard's "recently closed" list says how long it keeps an incident and drops it on
``emergency_archived``; the reporter's tracking page says when it moves and, once it has,
that it is in the history and where, instead of "not found"."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from tests.conftest import wait_for
from tests.views.conftest import LiveSite
from tests.views.test_live_pages import LIVE, incident, open_dashboard

ARCHIVE_AFTER_S = 10.0


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    s = make_settings(archive_after_s=ARCHIVE_AFTER_S, archive_sweep_s=0.5)
    ensure_topics(s)
    return s


def test_a_closed_report_moves_to_history_and_the_pages_say_so(
    site: LiveSite, new_context, artifacts_dir: Path
) -> None:
    emergency_id = site.report(description="smoke from a basement window")
    site.command(emergency_id, "dispatch")
    dashboard = open_dashboard(new_context(), site)
    expect(dashboard.locator("#closed-note")).to_have_text(
        "kept 10 s, then in history (replay, DuckDB)"
    )
    # The same page where its stream cannot be opened: polling, from before the completion
    # (10 s of window after it would race the fallback to polling on a loaded machine).
    blocked = new_context(token=None)
    blocked.route("**/stream*", lambda route: route.abort())
    polled = blocked.new_page()
    polled.goto(f"{site.base_url}/track/{emergency_id}")
    expect(polled.locator("#live-indicator")).to_have_attribute("data-transport", "poll")
    site.command(emergency_id, "complete")

    # In the window: the dashboard lists it as recently closed, the tracking page says
    # until when it follows it.
    closed = dashboard.locator(f'#closed-list .incident[data-id="{emergency_id}"]')
    expect(closed).to_be_visible(timeout=LIVE)
    tracking = new_context(token=None).new_page()
    tracking.goto(f"{site.base_url}/track/{emergency_id}")
    expect(tracking.locator("#status-badge")).to_have_text("COMPLETED", timeout=LIVE)
    expect(tracking.locator("#status-text")).to_contain_text("then it moves to the history")

    # Archived: gone from the dashboard by the live event, 410 for the page.
    expect(incident(dashboard, emergency_id)).to_have_count(0, timeout=LIVE + 10_000)
    wait_for(
        lambda: site.http.get(f"/api/emergencies/{emergency_id}").status_code == 410,
        timeout=LIVE / 1000,
        message="410 Gone for the archived emergency",
    )
    later = new_context(token=None).new_page()
    later.goto(f"{site.base_url}/track/{emergency_id}")
    # The pages that followed it in the window say so as it happens (the stream ends with
    # emergency_archived; the poll gets the 410); one opened later, from the 410.
    for page in (tracking, polled, later):
        expect(page.locator("body")).to_have_attribute("data-archived", "true", timeout=LIVE)
        text = page.locator("#status-text")
        expect(text).to_contain_text("moved to the history")
        expect(text).to_contain_text("replay")
        expect(text).to_contain_text("DuckDB")
        expect(page.locator("#status-badge")).to_have_text("COMPLETED")
    expect(tracking.locator("#live-indicator")).to_have_attribute("data-phase", "closed")
    later.screenshot(path=str(artifacts_dir / "views-track-archived.png"))
