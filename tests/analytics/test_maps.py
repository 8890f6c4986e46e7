"""The exported map renders in a real browser with no network at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.analytics.conftest import run_cli, stored_snapshot
from tests.analytics.test_queries import known_story

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_exported_map_renders_offline(make_settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    settings = make_settings()
    snap = stored_snapshot(settings, known_story().events, tmp_path / "snap.duckdb")
    page_path = tmp_path / "map.html"
    run_cli(settings, "export-map", str(snap), str(page_path))
    html = page_path.read_text()
    assert "cdn." not in html.split("<script>")[0]  # nothing fetched by the head

    outside: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"],
        )
        try:
            page = browser.new_page()

            def route(r) -> None:
                if r.request.url.startswith(("file:", "data:", "blob:")):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.wait_for_function(
                "() => window.deckInstance && window.deckInstance.isInitialized"
                " && document.querySelector('#deck-container canvas')", timeout=60_000)
            layers = page.evaluate(
                "() => window.deckInstance.props.layers.map(l => [l.id, l.props.data.length])")
        finally:
            browser.close()
    assert outside == []
    assert errors == []
    assert dict(layers) == {"incidents": 5, "unit-tracks": 3, "unit-positions": 3}
