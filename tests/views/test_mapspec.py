"""The base map spec and the page routes, without a browser or Kafka."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
from starlette.applications import Starlette

import views
from dispatchwire.settings import Settings
from schemas import geo
from views.mapspec import LIVE_LAYER_IDS, build_base_spec
from views.pages import DECK_BUNDLE


class Client:
    """A tiny synchronous face over httpx's ASGI transport (no server, no network)."""

    def __init__(self, settings: Settings) -> None:
        self.app = Starlette(routes=views.routes(settings))

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://views") as c:
                response = await c.get(path, headers=headers)
                await response.aread()
                return response

        # Its own thread: Playwright's sync API keeps an event loop on the main thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(anyio.run, fetch).result()


def test_base_spec_draws_every_street_once_and_empty_live_layers() -> None:
    spec = json.loads(build_base_spec(Settings()))
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert list(layers) == ["roads", *LIVE_LAYER_IDS]
    assert len(layers["roads"]["data"]) == len(geo.load_network().paths)
    assert all(layers[name]["data"] == [] for name in LIVE_LAYER_IDS)
    assert "OpenStreetMap contributors" in spec["attribution"]
    assert "mapProvider" not in spec  # offline: nothing to fetch
    south, west, north, east = geo.load_network().bbox
    assert south < spec["initialViewState"]["latitude"] < north
    assert west < spec["initialViewState"]["longitude"] < east


def test_literal_string_props_are_not_turned_into_expressions() -> None:
    # Regression: pydeck makes every string an "@@=" expression; "@@=pixels" as
    # radiusUnits painted the whole map in one colour.
    spec = json.loads(build_base_spec(Settings()))
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert layers["units"]["radiusUnits"] == "pixels"
    assert layers["routes"]["widthUnits"] == "pixels"
    assert layers["units"]["getPosition"] == "@@=position"


def test_a_tile_style_replaces_the_roads_and_is_allowed_by_the_csp() -> None:
    settings = Settings(map_style_url="https://tiles.example.org/style.json")
    spec = json.loads(build_base_spec(settings))
    assert [layer["id"] for layer in spec["layers"]] == list(LIVE_LAYER_IDS)
    assert spec["mapStyle"] == "https://tiles.example.org/style.json"
    client = Client(settings)
    assert "https://tiles.example.org" in client.get("/").headers["content-security-policy"]


def test_routes_serve_pages_with_a_csp_the_bundle_and_a_cacheable_spec() -> None:
    client = Client(Settings())
    for path in ("/", "/report", "/units", "/track/abc123"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe" not in policy
        assert "https://" not in response.text  # no CDN, no web fonts
    bundle = client.get("/static/vendor/deck.js")
    assert bundle.status_code == 200 and len(bundle.content) == DECK_BUNDLE.stat().st_size
    assert "createDeck" in bundle.text
    spec = client.get("/views/map/base.json")
    assert spec.status_code == 200
    again = client.get("/views/map/base.json", headers={"If-None-Match": spec.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/static/js/live.js").status_code == 200
