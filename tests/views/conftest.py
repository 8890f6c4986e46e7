"""Browser fixtures: Debian's Chromium driven by Playwright, against the real stack.

Every test gets its own topics, a real Faust worker (``running_worker``), the seeded fleet
and the real API (``api.create_app`` served by uvicorn in a thread), which mounts the
pages through ``views.routes``. Chromium is launched once per session; each test opens
its own browser contexts (separate storage, like separate people) and they are closed at
the end. Every request any page makes is recorded, so tests can check nothing left
127.0.0.1.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from dispatchwire.settings import Settings
from infra.kafka import free_port
from tests.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AUTHORITY = "dev-authority"
FLEET_SIZE = 16  # streams.seed: 4 regions x (2 ambulances, 1 fire engine, 1 police car)

pytestmark = pytest.mark.browser


class LiveSite:
    """The real API (with the pages) on a free loopback port, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        from api.server import build_server

        self.settings = settings
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server = build_server(settings, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.run, name="views-api", daemon=True)
        self.http = httpx.Client(
            base_url=self.base_url, timeout=10.0, headers={"Authorization": f"Bearer {AUTHORITY}"}
        )

    def _ready(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> LiveSite:
        self.thread.start()
        wait_for(self._ready, timeout=60, interval=0.2, message="the API to be ready")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.http.close()

    def state(self) -> dict:
        response = self.http.get("/api/state")
        response.raise_for_status()
        return response.json()

    def emergency(self, emergency_id: str) -> dict:
        return self.http.get(f"/api/emergencies/{emergency_id}").json()

    def unit(self, unit_id: str) -> dict | None:
        return next((u for u in self.state()["units"] if u["id"] == unit_id), None)

    def report(self, **fields: object) -> str:
        """Report an emergency through the API (as another reporter would); its id."""
        body = {
            "type": "medical",
            "priority": 2,
            "lat": 60.1712,
            "lon": 24.9440,
            "description": "person collapsed at the tram stop",
            **fields,
        }
        response = self.http.post("/api/emergencies", json=body, headers={"Authorization": ""})
        assert response.status_code in (201, 202), response.text
        payload = response.json()
        return payload.get("id") or payload["emergency_id"]

    def command(self, emergency_id: str, verb: str) -> dict:
        response = self.http.post(f"/api/emergencies/{emergency_id}/{verb}", json={})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def site(settings: Settings, running_worker: Callable[[Settings], object]) -> Iterator[LiveSite]:
    """Worker + seeded fleet + API with the pages, all on this test's own topics."""
    from streams.seed import seed

    running_worker(settings)
    seed(settings)
    live = LiveSite(settings).start()
    try:
        wait_for(
            lambda: len(live.state()["units"]) == FLEET_SIZE,
            timeout=60,
            interval=0.2,
            message="the seeded fleet in the read model",
        )
        yield live
    finally:
        live.stop()


# Module scope, not session: Playwright's sync API keeps an event loop running in this
# thread while it is open, which breaks any later test that calls asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # An `expect` retries until its condition holds; Playwright gives up after 5 s, which a
    # page on a loaded two-core machine (the suite's brokers, workers and Chromium at once)
    # can need. A passing check returns as soon as it holds, so a longer bound costs nothing.
    expect.set_options(timeout=15_000)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Requests:
    """Every URL the pages of a test asked for, and every console error."""

    urls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def outside(self, base_url: str) -> list[str]:
        return [
            u
            for u in self.urls
            if not u.startswith(base_url + "/")
            and not u.startswith(("data:", "blob:"))
            and not u.startswith(base_url.replace("http://", "ws://") + "/")
        ]


@pytest.fixture
def requests_seen() -> Requests:
    return Requests()


@pytest.fixture
def new_context(browser: object, requests_seen: Requests) -> Iterator[Callable[..., object]]:
    """Factory: a fresh browser context (own storage), optionally already holding the token."""
    contexts: list[object] = []

    def factory(token: str | None = AUTHORITY) -> object:
        context = browser.new_context(viewport={"width": 1440, "height": 860})  # type: ignore[attr-defined]
        if token:
            context.add_init_script(f"localStorage.setItem('dispatchwire.token', {token!r});")
        context.on("request", lambda request: requests_seen.urls.append(request.url))
        context.on(
            "page",
            lambda page: page.on(
                "console",
                lambda msg: (
                    requests_seen.console_errors.append(msg.text) if msg.type == "error" else None
                ),
            ),
        )
        contexts.append(context)
        return context

    yield factory
    for context in contexts:
        context.close()
