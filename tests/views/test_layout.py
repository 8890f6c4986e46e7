"""One layout for the five pages (issue 13 item 4): the head, the top bar and the token
dialog are written once, in ``views/pages/layout.html`` and ``views.pages``; each page file
holds only its body. Without a browser or Kafka."""

from __future__ import annotations

import re

import pytest

from dispatchwire.settings import Settings
from tests.views.test_mapspec import Client
from views import pages
from views.pages import PAGES, PAGES_DIR, render_page

SERVED = {
    "dashboard": "/",
    "report": "/report",
    "track": "/track/e-1",
    "units": "/units",
    "replay": "/replay",
}


@pytest.mark.parametrize("name", SERVED)
def test_a_page_file_holds_only_its_body(name: str) -> None:
    text = (PAGES_DIR / f"{name}.html").read_text(encoding="utf-8")
    for part in ("<!doctype", "<html", "<head", "<body", 'class="topbar"', "token-dialog"):
        assert part not in text.lower(), f"{name}.html repeats the layout's {part}"


@pytest.mark.parametrize("name", SERVED)
def test_every_page_is_served_in_the_one_layout(name: str) -> None:
    page = next(p for p in PAGES if p.name == name)
    html = Client(Settings()).get(SERVED[name]).text
    assert html == render_page(page)
    assert "$" not in html  # every placeholder of the layout and the parts filled
    for once in (
        "<head>",
        '<header class="topbar">',
        "</body>",
        "/static/css/console.css",
        f'<script type="module" src="/static/js/{page.script}">',
    ):
        assert html.count(once) == 1, (name, once)
    assert f"<title>{page.title} · dispatchwire</title>" in html
    current = re.findall(r'<a href="([^"]*)" aria-current="page">', html)
    assert current == ([page.path] if name != "track" else [])
    assert html.count('id="token-dialog"') == (1 if page.login_prompt else 0)
    assert html.count('id="change-token"') == (1 if page.login_prompt else 0)
    assert html.count('id="live-indicator"') == (1 if page.indicator else 0)


def test_the_layout_is_rendered_at_start_up_not_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = Client(Settings())
    calls: list[str] = []
    monkeypatch.setattr(pages, "render_page", lambda page: calls.append(page.name) or "")
    first = client.get("/units").text
    assert client.get("/units").text == first and calls == []
