"""What the pages learn from the server (``/views/config.js``), and how they act on it, in
real Chromium: the WebSocket close codes of ``schemas.live`` (one test per action) and the
development token hint, shown only in dev mode (issue 12, items 6 and 7).

The pages run against ``ClosingSite``: the real page routes under uvicorn, with a ``/ws``
that closes with the code under test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from dispatchwire.settings import Settings
from schemas.live import CLOSE_CODES, close_codes_json
from tests.conftest import wait_for
from tests.views.closing_site import ClosingSite
from tests.views.test_mapspec import Client

pytestmark = pytest.mark.browser

PROD = {
    "mode": "prod",
    "authority_token": "a-real-authority-secret",
    "unit_token": "a-real-unit-secret",
    "reporter_token": "a-real-reporter-secret",
}


def codes(action: str) -> list[int]:
    return [c.code for c in CLOSE_CODES if c.action == action]


def reason(code: int) -> str:
    return close_codes_json()[str(code)]["reason"]


def served_config(settings: Settings) -> dict:
    response = Client(settings).get("/views/config.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    text = response.text
    body = text[text.index("Object.freeze(") + len("Object.freeze(") : text.rindex(");")]
    return json.loads(body)


def test_the_config_module_carries_the_close_code_table_and_the_mode() -> None:
    dev = served_config(Settings())
    assert dev["closeCodes"] == close_codes_json()
    assert {rule["action"] for rule in dev["closeCodes"].values()} == {
        "reconnect",
        "login",
        "backoff",
        "stop",
    }
    assert dev["mode"] == "dev" and dev["devTokenHint"] == "dev-authority"
    prod = served_config(Settings(**PROD))
    assert prod["mode"] == "prod" and prod["devTokenHint"] is None
    assert "a-real-authority-secret" not in json.dumps(prod)
    # Dev mode with a token of one's own: no hint either (it would be wrong).
    assert served_config(Settings(authority_token="mine"))["devTokenHint"] is None


@pytest.fixture
def closing_site() -> Iterator[Callable[..., ClosingSite]]:
    sites: list[ClosingSite] = []

    def start(close_code: int = 1000, **settings: object) -> ClosingSite:
        site = ClosingSite(Settings(**settings), close_code=close_code).start()  # type: ignore[arg-type]
        sites.append(site)
        return site

    yield start
    for site in sites:
        site.stop()


def open_dashboard(context, site: ClosingSite) -> Page:
    page = context.new_page()
    page.goto(site.base_url + "/")
    return page


def dialog_open(page: Page) -> bool:
    return page.evaluate("document.getElementById('token-dialog').open")


@pytest.mark.parametrize("code", [*codes("reconnect"), 1008])
def test_close_with_reconnect_resumes_without_asking_for_a_token(
    code: int, closing_site, new_context
) -> None:
    # Regression: 1008 (which the server used for "client too slow") opened the token dialog.
    site = closing_site(code)
    page = open_dashboard(new_context(), site)
    wait_for(
        lambda: len(site.connections) >= 3,
        timeout=20,
        interval=0.1,
        message="the page to reconnect twice",
    )
    assert not dialog_open(page)
    assert page.locator("#live-indicator").get_attribute("data-transport") == "ws"
    assert {c.token for c in site.connections} == {"dev-authority"}


@pytest.mark.parametrize("code", codes("login"))
def test_close_with_login_asks_for_a_token_and_reconnects_with_it(
    code: int, closing_site, new_context
) -> None:
    site = closing_site(code)
    page = open_dashboard(new_context(token="a-stale-token"), site)
    expect(page.locator("#token-dialog")).to_be_visible(timeout=15_000)
    expect(page.locator("#token-dialog .dialog-error")).to_contain_text("refused")
    expect(page.locator("#live-indicator")).to_have_attribute("data-phase", "unauthorized")
    assert [(c.token, c.hello) for c in site.connections] == [("a-stale-token", True)]
    page.locator("#token-dialog input").fill("a-fresh-token")
    page.locator("#token-dialog button[type=submit]").click()
    wait_for(
        lambda: any(c.token == "a-fresh-token" for c in site.connections),
        timeout=15,
        interval=0.1,
        message="a connection with the new token",
    )


@pytest.mark.parametrize("code", codes("backoff"))
def test_close_with_backoff_waits_longer_before_reconnecting(
    code: int, closing_site, new_context
) -> None:
    site = closing_site(code)
    page = open_dashboard(new_context(), site)
    indicator = page.locator("#live-indicator")
    expect(indicator).to_have_attribute("data-phase", "backoff", timeout=15_000)
    expect(indicator).to_have_attribute("title", reason(code))
    wait_for(
        lambda: len(site.connections) >= 2,
        timeout=20,
        interval=0.1,
        message="the page to come back after its back-off",
    )
    assert not dialog_open(page)


@pytest.mark.parametrize("code", codes("stop"))
def test_close_with_stop_does_not_reconnect_and_says_why(
    code: int, closing_site, new_context
) -> None:
    site = closing_site(code)
    page = open_dashboard(new_context(), site)
    indicator = page.locator("#live-indicator")
    expect(indicator).to_have_attribute("data-phase", "stopped", timeout=15_000)
    expect(indicator).to_have_attribute("title", reason(code))
    # Absence of a reconnect: watched for well past every retry delay of the page (1.5 s).
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert len(site.connections) == 1
        page.wait_for_timeout(250)
    assert not dialog_open(page)


@pytest.mark.parametrize(("settings", "hint"), [({}, True), (PROD, False)], ids=["dev", "prod"])
def test_the_token_dialog_hints_the_dev_token_only_in_dev_mode(
    settings: dict, hint: bool, closing_site, new_context, artifacts_dir: Path
) -> None:
    site = closing_site(**settings)
    for path in ("/", "/units", "/replay"):
        page = new_context(token=None).new_page()
        page.goto(site.base_url + path)
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible(timeout=15_000)
        if hint:
            expect(dialog).to_contain_text("Development default: dev-authority")
        else:
            expect(dialog).not_to_contain_text("dev-authority")
            expect(dialog.locator(".dev-hint")).to_be_hidden()
        if path == "/":
            name = f"views-token-dialog-{'dev' if hint else 'prod'}.png"
            page.screenshot(path=str(artifacts_dir / name))
