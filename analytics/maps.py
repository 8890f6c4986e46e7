"""``dispatchwire export-map``: a self-contained pydeck HTML map of a snapshot.

Incidents are aggregated in a HexagonLayer, unit tracks drawn as a PathLayer, units'
last positions as dots, over the same street network the live pages draw (the roads of
``schemas.geo``, as ``geo.road_layer_data`` in ``geo.ROAD_COLOR``, the live pages' street
layer); the view is fitted to the data. The page works offline: pydeck's own ``to_html``
template pulls mapbox-gl, bootstrap and maplibre CSS and the widget stylesheet from CDNs
even in its ``offline`` mode, so the page is written from our own small template that
inlines the deck.gl bundle shipped in the pydeck package (``nbextension/static/index.js``,
which defines ``createDeck``) and uses no base-map tiles (``map_style=None``).
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from pathlib import Path

import duckdb
import pydeck as pdk

from dispatchwire.errors import SinkError
from schemas import geo

TRACKS_SQL = """
SELECT e.unit_id, any_value(u.type) AS type, any_value(u.callsign) AS callsign,
       list([e.lon, e.lat] ORDER BY e.occurred_at, e."partition", e."offset") AS path
FROM events e LEFT JOIN units u ON u.id = e.unit_id
WHERE e.event IN ('unit_location', 'unit_status_update') AND e.lat IS NOT NULL
GROUP BY e.unit_id
ORDER BY e.unit_id
"""
UNIT_COLORS = {
    "ambulance": [46, 204, 113],
    "fire_engine": [231, 76, 60],
    "police_car": [52, 152, 219],
}
# pydeck turns every string prop into an ``@@=`` expression; deck.gl's JSON converter
# reads a quoted string as a literal. Plain "pixels" reached deck.gl as "@@=pixels", an
# accessor instead of a unit, and the map came out as one solid rectangle of track colour.
PIXELS = "'pixels'"
# The view fitted to the data: the spread of the points plus this margin on each side.
FIT_MARGIN = 0.15

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8" />
<title>{title}</title>
<style>
body {{ margin: 0; padding: 0; overflow: hidden; background: #10141c; font: 13px sans-serif; }}
#deck-container {{ width: 100vw; height: 100vh; }}
#legend {{ position: absolute; left: 8px; bottom: 8px; z-index: 2; color: #dde;
          background: rgba(16,20,28,.85); padding: 6px 10px; border-radius: 4px; }}
</style>
<script>{bundle}</script>
</head>
<body>
<div id="deck-container"></div>
<div id="legend">{legend}</div>
<script>
const deckInstance = createDeck({{
  container: document.getElementById('deck-container'),
  jsonInput: {spec},
  tooltip: true,
}});
window.deckInstance = deckInstance;
</script>
</body>
</html>
"""


def _bundle() -> str:
    js = resources.files("pydeck").joinpath("nbextension", "static", "index.js").read_text()
    return js.replace("</script", "<\\/script")


def build_deck(db: Path, network: geo.RoadNetwork | None = None) -> pdk.Deck:
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise SinkError(f"cannot open snapshot {db}: {exc}") from exc
    try:
        incidents = [
            {"position": [lon, lat], "type": t, "status": s, "id": i}
            for lon, lat, t, s, i in con.execute(
                "SELECT lon, lat, type, status, id FROM emergencies"
            ).fetchall()
        ]
        tracks = [
            {
                "unit_id": u,
                "callsign": c or u,
                "path": path,
                "color": UNIT_COLORS.get(t or "", [200, 200, 200]),
            }
            for u, t, c, path in con.execute(TRACKS_SQL).fetchall()
        ]
    except duckdb.Error as exc:
        raise SinkError(f"{db} is not a dispatchwire snapshot: {exc}") from exc
    finally:
        con.close()
    points = [i["position"] for i in incidents] + [p for t in tracks for p in t["path"]]
    network = network or geo.load_network()
    layers = [
        pdk.Layer(
            "PathLayer",
            id="roads",
            data=geo.road_layer_data(network),
            get_path="path",
            get_color=geo.ROAD_COLOR,
            get_width=2,
            width_units=PIXELS,
            pickable=False,
        ),
        pdk.Layer(
            "HexagonLayer",
            id="incidents",
            data=incidents,
            get_position="position",
            radius=150,
            coverage=0.9,
            extruded=False,
            opacity=0.6,
            pickable=True,
        ),
        pdk.Layer(
            "PathLayer",
            id="unit-tracks",
            data=tracks,
            get_path="path",
            get_color="color",
            get_width=3,
            width_units=PIXELS,
            pickable=True,
            cap_rounded=True,
            joint_rounded=True,
        ),
        pdk.Layer(
            "ScatterplotLayer",
            id="unit-positions",
            data=[
                {"position": t["path"][-1], "color": t["color"], "callsign": t["callsign"]}
                for t in tracks
                if t["path"]
            ],
            get_position="position",
            get_fill_color="color",
            get_radius=6,
            radius_units=PIXELS,
            get_line_color=[15, 20, 30],
            stroked=True,
            line_width_min_pixels=1,
            pickable=True,
        ),
    ]
    return pdk.Deck(
        layers=layers,
        map_style=None,
        initial_view_state=fitted_view(points or _corners(network)),
        tooltip={"text": "{callsign}"},
    )


def _corners(network: geo.RoadNetwork) -> list[list[float]]:
    south, west, north, east = network.bbox
    return [[west, south], [east, north]]


def fitted_view(points: list[list[float]]) -> pdk.ViewState:
    """A view whose zoom shows every ``[lon, lat]`` point (with a margin), centred on them.

    ``pdk.data_utils.compute_view`` centres on the mean, which a long track pulls off the
    middle of the box; this centres on the box and rounds the zoom down to a half step.
    """
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    lat = (south + north) / 2
    # Web Mercator: the world is 360 degrees of longitude at zoom 0 (512 px in deck.gl);
    # latitude spans are stretched by 1/cos(lat). Fit the larger of the two to ~720 px,
    # a laptop window's height.
    span_lon = max(east - west, 1e-4) * (1 + 2 * FIT_MARGIN)
    span_lat = max(north - south, 1e-4) * (1 + 2 * FIT_MARGIN) / math.cos(math.radians(lat))
    zoom = math.log2(360 * 720 / 512 / max(span_lon, span_lat))
    return pdk.ViewState(
        latitude=lat,
        longitude=(west + east) / 2,
        zoom=math.floor(min(zoom, 17.0) * 2) / 2,
        min_zoom=9,
        max_zoom=19,
    )


def write_map(db: Path, out: Path, network: geo.RoadNetwork | None = None) -> Path:
    """Write an offline HTML map of snapshot ``db`` to ``out``, over ``network``'s streets
    (default: Helsinki)."""
    deck = build_deck(db, network)
    spec = json.dumps(json.loads(deck.to_json())).replace("</", "<\\/")
    legend = (
        "incidents: hexagons (darker = more) &middot; unit tracks: "
        "<b style='color:#2ecc71'>ambulance</b> <b style='color:#e74c3c'>fire</b> "
        "<b style='color:#3498db'>police</b>"
    )
    page = PAGE.format(
        title=html.escape(f"dispatchwire map - {db.name}"),
        bundle=_bundle(),
        legend=legend,
        spec=spec,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
