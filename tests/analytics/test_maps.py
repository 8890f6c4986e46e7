"""The exported map renders in a real browser with no network at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analytics.maps import UNIT_COLORS
from schemas import geo
from tests.analytics.conftest import run_cli, stored_snapshot
from tests.analytics.test_queries import known_story
from tests.views.pixels import ROAD, assert_map_shows

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_exported_map_renders_offline_with_streets_tracks_and_a_fitted_view(
    make_settings, tmp_path: Path, artifacts_dir: Path
) -> None:
    # Regression (issue 12, item 1): "pixels" reached deck.gl as the expression
    # "@@=pixels" and the whole map was one solid rectangle of the police colour.
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
            args=[
                "--no-sandbox",
                "--use-gl=angle",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--ignore-gpu-blocklist",
            ],
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
                " && document.querySelector('#deck-container canvas')",
                timeout=60_000,
            )
            layers = page.evaluate(
                "() => window.deckInstance.props.layers.map(l => [l.id, l.props.data.length])"
            )
            pixels = assert_map_shows(
                page,
                "#deck-container",
                path=str(artifacts_dir / "analytics-export-map.png"),
                road=ROAD,
                **{k: tuple(v) for k, v in UNIT_COLORS.items()},
            )
            # Where the data lands on the screen: every point inside, spread over it.
            spread = page.evaluate("""() => {
                const vp = window.deckInstance.getViewports()[0];
                const layers = window.deckInstance.props.layers;
                const pts = [
                  ...layers.find((l) => l.id === 'incidents').props.data.map((d) => d.position),
                  ...layers.find((l) => l.id === 'unit-tracks').props.data.flatMap((d) => d.path)];
                const xy = pts.map((p) => vp.project(p));
                const xs = xy.map((p) => p[0]), ys = xy.map((p) => p[1]);
                return {w: vp.width, h: vp.height, left: Math.min(...xs), right: Math.max(...xs),
                        top: Math.min(...ys), bottom: Math.max(...ys)};
            }""")
        finally:
            browser.close()
    assert outside == []
    assert errors == []
    assert dict(layers) == {
        "roads": len(geo.load_network().paths),
        "incidents": 5,
        "unit-tracks": 3,
        "unit-positions": 3,
    }
    assert pixels.counts["road"] > 1000  # the street network, not a few stray pixels
    # Fitted to the data: all of it on screen, and filling most of one dimension.
    assert 0 <= spread["left"] < spread["right"] <= spread["w"], spread
    assert 0 <= spread["top"] < spread["bottom"] <= spread["h"], spread
    assert (
        max(
            (spread["right"] - spread["left"]) / spread["w"],
            (spread["bottom"] - spread["top"]) / spread["h"],
        )
        > 0.5
    ), spread
