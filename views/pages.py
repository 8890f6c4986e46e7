"""The pages, their static files and the base map spec, as routes the API mounts.

Pages are one layout (``pages/layout.html``: head, top bar, token dialog) around each
page's own body (``pages/<name>.html``, which may place the shared ``pages/parts/``),
rendered once when the routes are built. They
load ES modules from ``/static/js``; everything live arrives
through ``static/js/live.js`` (SSE, then WebSocket, then REST polling), except on the
replay page, whose board is fed by the analytics replay stream (``static/js/replayfeed.js``,
``/api/replay/stream``) and sends no commands. The deck.gl bundle
is served straight from the installed pydeck package, never copied into the repository.

Every HTML response carries a strict Content-Security-Policy: same-origin only, no inline
script or style, no outside hosts (unless a tile style URL is configured, whose origin is
then allowed for fetching tiles).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import anyio.to_thread
import pydeck
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from dispatchwire.settings import Settings
from views.config import config_endpoint
from views.mapspec import build_base_spec
from views.streets import configured_index_bytes

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
PAGES_DIR = HERE / "pages"
DECK_BUNDLE = Path(pydeck.__file__).resolve().parent / "nbextension" / "static" / "index.js"

LAYOUT = PAGES_DIR / "layout.html"

# The console's page links, in the top bar of every page but the tracking page.
CONSOLE_NAV = (("/", "Dispatch"), ("/units", "Units"), ("/report", "Report"), ("/replay", "Replay"))
# The board's counters (board.js fills them), on the dashboard and the replay.
BOARD_COUNTERS = (
    ("pending", "count-pending", "pending"),
    ("active", "count-active", "active"),
    ("available", "count-available", "units free"),
)


@dataclass(frozen=True)
class Page:
    """One page: what it puts into the layout (``pages/layout.html``) around its body.

    The body is ``pages/<name>.html``; the top bar gets the nav (the page's own link
    marked), the ``counters`` as ``(class, element id, label)``, the live indicator and the
    token button, in that order; ``login_prompt`` is the sentence of the token dialog (no
    dialog, and no token button, without it).
    """

    name: str
    path: str
    title: str
    script: str
    body_class: str = "console"
    home: str = "/"
    nav: tuple[tuple[str, str], ...] = CONSOLE_NAV
    counters: tuple[tuple[str, str, str], ...] = ()
    indicator: bool = True
    login_prompt: str = ""


PAGES = (
    Page(
        "dashboard",
        "/",
        "Dispatch",
        "dashboard.js",
        counters=BOARD_COUNTERS,
        login_prompt="The dispatch console needs the authority token.",
    ),
    Page("report", "/report", "Report an emergency", "report.js", home="/report", indicator=False),
    Page(
        "track",
        "/track/{id}",
        "Tracking your report",
        "track.js",
        home="/report",
        nav=(("/report", "New report"),),
    ),
    Page(
        "units",
        "/units",
        "Units",
        "units.js",
        counters=(
            ("active", "count-tracked", "en route"),
            ("available", "count-available", "units free"),
        ),
        login_prompt="Unit tracking needs the authority token.",
    ),
    Page(
        "replay",
        "/replay",
        "Replay",
        "replay.js",
        body_class="console replay-mode",
        counters=BOARD_COUNTERS,
        indicator=False,
        login_prompt="Replays of the event log need the authority token.",
    ),
)

LOGIN_DIALOG = """\
  <dialog id="token-dialog" class="token-dialog">
    <form method="dialog">
      <h2>Authority token</h2>
      <p>$sentence<span class="dev-hint" hidden></span></p>
      <label>Token <input name="token" type="password" autocomplete="off" required></label>
      <p class="dialog-error" role="alert"></p>
      <button type="submit" class="primary">Continue</button>
    </form>
  </dialog>"""


def _topbar(page: Page) -> str:
    current = ' aria-current="page"'
    links = "".join(
        f'\n      <a href="{href}"{current if href == page.path else ""}>{escape(label)}</a>'
        for href, label in page.nav
    )
    lines = [f'    <nav aria-label="Pages">{links}\n    </nav>']
    if page.counters:
        spans = "".join(
            f'\n      <span class="counter {kind}"><b id="{node_id}">0</b> {escape(label)}</span>'
            for kind, node_id, label in page.counters
        )
        lines.append(f'    <div class="counters" aria-live="polite">{spans}\n    </div>')
    if page.indicator:
        lines.append(
            '    <div id="live-indicator" class="live-indicator" role="status" '
            'aria-live="polite"></div>'
        )
    if page.login_prompt:
        lines.append(
            '    <button id="change-token" class="ghost" type="button" '
            'title="Change the authority token">Token</button>'
        )
    return "\n".join(lines)


def _parts() -> dict[str, str]:
    """The pieces of markup bodies share (``pages/parts/*.html``), by placeholder name:
    ``$incident_lists`` for ``incident-lists.html``."""
    return {
        part.stem.replace("-", "_"): part.read_text(encoding="utf-8").rstrip("\n")
        for part in (PAGES_DIR / "parts").glob("*.html")
    }


def render_page(page: Page) -> str:
    """The page's HTML: the layout around its body (its ``$`` placeholders filled with the
    shared parts). Done once per page, at start-up."""
    return Template(LAYOUT.read_text(encoding="utf-8")).substitute(
        title=escape(page.title),
        script=page.script,
        body_class=page.body_class,
        home=page.home,
        topbar=_topbar(page),
        body=Template((PAGES_DIR / f"{page.name}.html").read_text(encoding="utf-8"))
        .substitute(_parts())
        .rstrip("\n"),
        token_dialog=Template(LOGIN_DIALOG).substitute(sentence=escape(page.login_prompt))
        if page.login_prompt
        else "",
    )


def content_security_policy(settings: Settings) -> str:
    """The CSP of every page: same origin only, no inline script or style, no eval.

    Checked in Chromium against pydeck's bundle: the ``@@=`` accessors of the spec are
    parsed by deck.gl's JSON converter without ``eval``, so ``'unsafe-eval'`` is not needed;
    ``data:`` images are its WebP support probe. The bundle also probes WebAssembly once at
    load (a try/catch around ``new WebAssembly.Module`` in loaders.gl); that probe is left
    blocked (a CSP report in the console, nothing else) because no layer here uses WASM.
    """
    extra = ""
    if settings.map_style_url:
        parts = urlsplit(settings.map_style_url)
        extra = f" {parts.scheme}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src 'self'{extra}",
            f"img-src 'self' data:{extra}",
            f"connect-src 'self'{extra}",
            f"worker-src 'self'{' blob:' if extra else ''}",
            f"font-src 'self'{extra}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _security_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


class BaseMapSpec:
    """The base map JSON, built once on first request (loading the roads takes seconds)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._body: bytes | None = None
        self._etag = ""
        self._lock = anyio.Lock()

    async def body(self) -> tuple[bytes, str]:
        async with self._lock:
            if self._body is None:
                text = await anyio.to_thread.run_sync(build_base_spec, self._settings)
                self._body = text.encode()
                self._etag = '"' + hashlib.sha256(self._body).hexdigest()[:32] + '"'
        return self._body, self._etag

    async def endpoint(self, request: Request) -> Response:
        body, etag = await self.body()
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)


def _page(page: Page, headers: dict[str, str]) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint serving one page, rendered and given its headers once, at start."""
    html = render_page(page)

    async def endpoint(request: Request) -> Response:
        return HTMLResponse(html, headers=headers)

    return endpoint


def _street_index(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """The street names of the report page's place search (``views.streets``), read once."""
    body = configured_index_bytes(settings)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}

    async def endpoint(request: Request) -> Response:
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    return endpoint


async def _deck_bundle(request: Request) -> Response:
    return FileResponse(DECK_BUNDLE, media_type="text/javascript")


def routes(settings: Settings) -> list[BaseRoute]:
    """Pages at ``/``, ``/report``, ``/track/{id}``, ``/units``, ``/replay``; static files;
    the map spec; the page config module; the street names of the place search."""
    spec = BaseMapSpec(settings)
    headers = _security_headers(settings)
    return [
        *(Route(page.path, _page(page, headers), name=page.name) for page in PAGES),
        Route("/views/map/base.json", spec.endpoint, name="base_map"),
        Route(
            "/views/config.js",
            config_endpoint(settings, {"Cache-Control": "no-cache"}),
            name="page_config",
        ),
        Route("/views/streets.json", _street_index(settings), name="street_index"),
        Route("/static/vendor/deck.js", _deck_bundle, name="deck_bundle"),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
