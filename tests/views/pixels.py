"""Pixel checks of the maps: what a screenshot of a map actually shows.

A map that deck.gl cannot draw still produces a canvas (one solid colour, or only the
background), so the browser tests look at the pixels: the street colour must be there, and
the colours of whatever markers and routes the map should show. The PNG is decoded by the
same Chromium (``createImageBitmap`` on a blank page), so no image library is needed.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

# The colours the maps draw (views/static/js/dom.js STATUS_RGB, schemas.geo.ROAD_COLOR,
# analytics.maps.UNIT_COLORS).
ROAD = (70, 82, 108)
PENDING = (245, 158, 11)
DISPATCHED = (59, 130, 246)
AVAILABLE = (34, 197, 94)
PICKED = (244, 63, 94)

# Overlays that are not the map: hidden while the screenshot is taken (through the CSSOM:
# the pages' CSP refuses the <style> element Playwright's ``style=`` option would add).
NOT_THE_MAP = "#toasts, #details, .attribution, #legend"
_HIDE_JS = """(selector) => { for (const n of document.querySelectorAll(selector)) {
  n.dataset.pixelsVisibility = n.style.visibility; n.style.visibility = 'hidden'; } }"""
_SHOW_JS = """(selector) => { for (const n of document.querySelectorAll(selector)) {
  n.style.visibility = n.dataset.pixelsVisibility || ''; delete n.dataset.pixelsVisibility; } }"""

_COUNT_JS = """
async ([b64, colours, tolerance]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const g = canvas.getContext("2d");
  g.drawImage(bitmap, 0, 0);
  const px = g.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const names = Object.keys(colours);
  const targets = names.map((n) => colours[n]);
  const counts = Object.fromEntries(names.map((n) => [n, 0]));
  const distinct = new Set();
  for (let i = 0; i < px.length; i += 4) {
    const r = px[i], gr = px[i + 1], b = px[i + 2];
    distinct.add(((r >> 4) << 8) | ((gr >> 4) << 4) | (b >> 4));
    for (let k = 0; k < targets.length; k += 1) {
      const t = targets[k];
      if (Math.abs(r - t[0]) <= tolerance && Math.abs(gr - t[1]) <= tolerance &&
          Math.abs(b - t[2]) <= tolerance) counts[names[k]] += 1;
    }
  }
  return { counts, distinct: distinct.size, total: px.length / 4 };
}
"""


@dataclass
class MapPixels:
    counts: dict[str, int]
    distinct: int  # colours, quantised to 4 bits per channel
    total: int

    def missing(self, minimum: int) -> dict[str, int]:
        return {name: n for name, n in self.counts.items() if n < minimum}

    def assert_shows(self, minimum: int = 40) -> None:
        """Not one colour, and at least ``minimum`` pixels of each counted colour."""
        assert self.distinct > 8, f"the map is (nearly) one colour: {self}"
        assert not self.missing(minimum), (
            f"colours missing from the map: {self.missing(minimum)}; {self}"
        )


def map_pixels(
    page: object,
    selector: str = "#map",
    tolerance: int = 30,
    path: str | None = None,
    **colours: tuple[int, int, int],
) -> MapPixels:
    """Screenshot the element ``selector`` of ``page`` (overlays hidden) and count, for each
    named colour, the pixels within ``tolerance`` of it per channel."""
    page.evaluate(_HIDE_JS, NOT_THE_MAP)  # type: ignore[attr-defined]
    try:
        png = page.locator(selector).screenshot(path=path)  # type: ignore[attr-defined]
    finally:
        page.evaluate(_SHOW_JS, NOT_THE_MAP)  # type: ignore[attr-defined]
    # A context of its own: the page's may route or block requests, or own only one page.
    scratch = page.context.browser.new_context()  # type: ignore[attr-defined]
    try:
        result = scratch.new_page().evaluate(
            _COUNT_JS, [base64.b64encode(png).decode(), colours, tolerance]
        )
    finally:
        scratch.close()
    return MapPixels(**result)


def assert_map_shows(
    page: object,
    selector: str = "#map",
    *,
    path: str | None = None,
    minimum: int = 40,
    timeout: float = 20.0,
    **colours: tuple[int, int, int],
) -> MapPixels:
    """Poll screenshots of the map until every named colour shows (the first frames may
    come before the layers are uploaded); fail with the counts after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pixels = map_pixels(page, selector, path=path, **colours)
        if (pixels.distinct > 8 and not pixels.missing(minimum)) or time.monotonic() > deadline:
            pixels.assert_shows(minimum)
            return pixels
        page.wait_for_timeout(300)  # type: ignore[attr-defined]  # between two screenshots
