"""The deck.gl map spec, built in Python with pydeck and rendered by pydeck's own bundle.

The browser gets this spec once (``/views/map/base.json``): the static roads layer and the
empty live layers (routes, emergencies, units, labels) with their accessors and styling.
After that the pages only swap the ``data`` of the live layers (``updateDeck``); the roads
layer object is created once and reused, so its 700-odd paths are never sent or uploaded
to the GPU again.

The roads are the drivable streets of the demo area from ``schemas.geo`` (the same
OpenStreetMap extract the router uses). A tile style URL (``DISPATCHWIRE_MAP_STYLE_URL``)
replaces the roads layer with a MapLibre base map; it is off by default because it makes
the browser fetch tiles from the internet.
"""

from __future__ import annotations

import json
import logging

import pydeck as pdk

from dispatchwire.settings import Settings
from schemas import geo

log = logging.getLogger(__name__)

ROADS_LAYER_ID = "roads"
LIVE_LAYER_IDS = ("routes", "emergencies", "units", "labels")


def road_network(settings: Settings) -> geo.RoadNetwork:
    """The network the router uses (``geo.configured_network``: ``DISPATCHWIRE_OSM_FILE``'s,
    else Helsinki)."""
    return geo.configured_network(settings.osm_file, settings.data_dir)


def _view_state(network: geo.RoadNetwork) -> pdk.ViewState:
    south, west, north, east = network.bbox
    return pdk.ViewState(
        latitude=(south + north) / 2,
        longitude=(west + east) / 2,
        zoom=14.6,  # the four stations and their labels in view on a laptop screen
        min_zoom=11,
        max_zoom=19,
    )


def _markers(layer_id: str, outline: list[int], radius_px: int) -> pdk.Layer:
    """A live marker layer: points coloured per datum, a fixed outline, sized in pixels."""
    return pdk.Layer(
        "ScatterplotLayer",
        id=layer_id,
        data=[],
        get_position="position",
        get_fill_color="color",
        get_line_color=outline,
        get_radius=radius_px,
        radius_units="'pixels'",
        stroked=True,
        line_width_min_pixels=2,
        pickable=True,
    )


def live_layers() -> list[pdk.Layer]:
    """The layers the pages feed from the live stream; their data starts empty.

    pydeck turns every string argument into a ``@@=`` expression; a literal string prop
    (``'pixels'``) is written quoted.

    Each datum carries its own ``position``/``path``, ``color`` and ``label`` (computed by
    the page from the entity's status), so the accessors here stay plain field names.
    """
    return [
        pdk.Layer(
            "PathLayer",
            id="routes",
            data=[],
            get_path="path",
            get_color="color",
            get_width=5,
            width_units="'pixels'",
            cap_rounded=True,
            joint_rounded=True,
            pickable=False,
        ),
        _markers("emergencies", outline=[255, 255, 255], radius_px=9),
        _markers("units", outline=[15, 20, 30], radius_px=7),
        pdk.Layer(
            "TextLayer",
            id="labels",
            data=[],
            get_position="position",
            get_text="label",
            get_color=[226, 232, 240],
            get_size=12,
            get_pixel_offset=[0, -16],
            # One label per place, a callsign a line, growing upwards from above the marker
            # (map.js groups and declutters them; keep its box estimate in step).
            get_alignment_baseline="'bottom'",
            line_height=1.15,
            font_family="'DejaVu Sans Mono, Menlo, monospace'",
            font_weight=600,
            outline_width=2,
            outline_color=[10, 14, 22],
            font_settings={"sdf": True},
            pickable=False,
        ),
    ]


def build_base_spec(settings: Settings) -> str:
    """``Deck.to_json()`` of the base map: roads (or a style URL) plus the empty live layers."""
    network = road_network(settings)
    paths = geo.road_layer_data(network)
    layers: list[pdk.Layer] = []
    if not settings.map_style_url:
        layers.append(
            pdk.Layer(
                "PathLayer",
                id=ROADS_LAYER_ID,
                data=paths,
                get_path="path",
                get_color=geo.ROAD_COLOR,
                get_width=2,
                width_units="'pixels'",
                pickable=False,
            )
        )
    layers.extend(live_layers())
    deck = pdk.Deck(
        layers=layers,
        initial_view_state=_view_state(network),
        map_style=settings.map_style_url,
        map_provider="carto" if settings.map_style_url else None,
        views=[pdk.View(type="MapView", controller=True)],
    )
    spec = json.loads(deck.to_json())
    # Not a deck prop: read by the page to caption the map (the roads are ODbL data).
    spec["attribution"] = network.attribution
    return json.dumps(spec, separators=(",", ":"))
