"""``dispatchwire export-map``: a self-contained pydeck HTML map of a snapshot.

Incidents are aggregated in a HexagonLayer, unit tracks drawn as a PathLayer, units'
last positions as dots. The page works offline: pydeck's own ``to_html`` template pulls
mapbox-gl, bootstrap and maplibre CSS and the widget stylesheet from CDNs even in its
``offline`` mode, so the page is written from our own small template that inlines the
deck.gl bundle shipped in the pydeck package (``nbextension/static/index.js``, which
defines ``createDeck``) and uses no base-map tiles (``map_style=None``).
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pydeck as pdk

from dispatchwire.errors import SinkError

TRACKS_SQL = """
SELECT e.unit_id, any_value(u.type) AS type, any_value(u.callsign) AS callsign,
       list([e.lon, e.lat] ORDER BY e.occurred_at, e."partition", e."offset") AS path
FROM events e LEFT JOIN units u ON u.id = e.unit_id
WHERE e.event IN ('unit_location', 'unit_status_update') AND e.lat IS NOT NULL
GROUP BY e.unit_id
ORDER BY e.unit_id
"""
UNIT_COLORS = {"ambulance": [46, 204, 113], "fire_engine": [231, 76, 60],
               "police_car": [52, 152, 219]}
FALLBACK_VIEW = (60.1699, 24.9384)  # central Helsinki

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


def build_deck(db: Path) -> pdk.Deck:
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise SinkError(f"cannot open snapshot {db}: {exc}") from exc
    try:
        incidents = [
            {"position": [lon, lat], "type": t, "status": s, "id": i}
            for lon, lat, t, s, i in con.execute(
                "SELECT lon, lat, type, status, id FROM emergencies").fetchall()
        ]
        tracks = [
            {"unit_id": u, "callsign": c or u, "path": path,
             "color": UNIT_COLORS.get(t or "", [200, 200, 200])}
            for u, t, c, path in con.execute(TRACKS_SQL).fetchall()
        ]
    except duckdb.Error as exc:
        raise SinkError(f"{db} is not a dispatchwire snapshot: {exc}") from exc
    finally:
        con.close()
    points = [i["position"] for i in incidents] + [p for t in tracks for p in t["path"]]
    if points:
        lon = sum(p[0] for p in points) / len(points)
        lat = sum(p[1] for p in points) / len(points)
    else:
        lat, lon = FALLBACK_VIEW
    layers = [
        pdk.Layer("HexagonLayer", id="incidents", data=incidents, get_position="position",
                  radius=150, coverage=0.9, extruded=False, opacity=0.6, pickable=True),
        pdk.Layer("PathLayer", id="unit-tracks", data=tracks, get_path="path",
                  get_color="color", get_width=3, width_units="pixels", pickable=True,
                  cap_rounded=True, joint_rounded=True),
        pdk.Layer("ScatterplotLayer", id="unit-positions",
                  data=[{"position": t["path"][-1], "color": t["color"],
                         "callsign": t["callsign"]} for t in tracks if t["path"]],
                  get_position="position", get_fill_color="color", get_radius=6,
                  radius_units="pixels", pickable=True),
    ]
    return pdk.Deck(layers=layers, map_style=None,
                    initial_view_state=pdk.ViewState(latitude=lat, longitude=lon, zoom=13),
                    tooltip={"text": "{callsign}"})


def write_map(db: Path, out: Path) -> Path:
    """Write an offline HTML map of snapshot ``db`` to ``out``."""
    deck = build_deck(db)
    spec = json.dumps(json.loads(deck.to_json())).replace("</", "<\\/")
    legend = ("incidents: hexagons (darker = more) &middot; unit tracks: "
              "<b style='color:#2ecc71'>ambulance</b> <b style='color:#e74c3c'>fire</b> "
              "<b style='color:#3498db'>police</b>")
    page = PAGE.format(title=html.escape(f"dispatchwire map - {db.name}"), bundle=_bundle(),
                       legend=legend, spec=spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def layer_summary(deck: pdk.Deck) -> dict[str, Any]:
    return {layer.id: len(layer.data) for layer in deck.layers}
