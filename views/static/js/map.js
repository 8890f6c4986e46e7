// The live map: pydeck's deck.gl bundle (/static/vendor/deck.js, globals createDeck and
// updateDeck) drawing the spec built in Python (/views/map/base.json).
//
// The deck is created once. Updates pass only the live layers, with new data, through
// updateDeck; the roads layer instance made at creation is put back in front of them, so
// deck.gl sees the same layer object and never re-processes the streets.

import { STATUS_RGB } from "./dom.js";

const ROADS = "roads";

function routePath(unit) {
  const route = unit.route || [];
  const from = Math.max(0, Math.min(route.length - 1, (unit.route_index ?? 0)));
  // The route is [lat, lon] pairs; deck wants [lon, lat]. Start at the unit itself.
  const rest = route.slice(from + 1).map(([lat, lon]) => [lon, lat]);
  return [[unit.lon, unit.lat], ...rest];
}

export function layerData({ emergencies = [], units = [], marker = null, routesFor = null }) {
  const em = emergencies.map((e) => ({
    id: e.id,
    kind: "emergency",
    position: [e.lon, e.lat],
    color: [...(STATUS_RGB[e.status] || [200, 200, 200]), 235],
  }));
  if (marker) em.push({ id: "picked", kind: "picked", position: [marker.lon, marker.lat], color: [244, 63, 94, 255] });
  const un = units.map((u) => ({
    id: u.id,
    kind: "unit",
    position: [u.lon, u.lat],
    color: [...(STATUS_RGB[u.status] || [200, 200, 200]), 255],
    label: u.callsign || u.id,
  }));
  const tracked = units.filter((u) => (routesFor ? routesFor(u) : u.status === "DISPATCHED") &&
    Array.isArray(u.route) && u.route.length > 1);
  const routes = tracked.map((u) => ({
    id: u.id,
    path: routePath(u),
    color: [...STATUS_RGB.DISPATCHED, 220],
  }));
  return { routes, emergencies: em, units: un, labels: stackedLabels(un) };
}

// Units parked together (a station) get one label, "NE-AMB1 +3", not four on top of
// each other.
function stackedLabels(units) {
  const groups = new Map();
  for (const u of units) {
    const key = `${u.position[0].toFixed(4)},${u.position[1].toFixed(4)}`;
    const group = groups.get(key);
    if (group) group.count += 1;
    else groups.set(key, { position: u.position, first: u.label, count: 1 });
  }
  return [...groups.values()].map((g) => ({
    position: g.position,
    label: g.count > 1 ? `${g.first} +${g.count - 1}` : g.first,
  }));
}

export class LiveMap {
  constructor(container, { onClick = null, onPick = null } = {}) {
    this.container = container;
    this.onClick = onClick;
    this.onPick = onPick;
    this.deck = null;
    this.templates = new Map();
    this.roads = null;
    this.pending = null;
    this.ready = this._init();
  }

  async _init() {
    const res = await fetch("/views/map/base.json");
    if (!res.ok) throw new Error(`map spec: HTTP ${res.status}`);
    const spec = await res.json();
    const attribution = spec.attribution;
    delete spec.attribution;
    for (const layer of spec.layers) if (layer.id !== ROADS) this.templates.set(layer.id, layer);
    this.roadCount = (spec.layers.find((l) => l.id === ROADS)?.data || []).length;
    this.container.dataset.roads = String(this.roadCount);
    const canvasHost = document.createElement("div");
    canvasHost.className = "deck-host";
    this.container.append(canvasHost);
    if (attribution) {
      const note = document.createElement("div");
      note.className = "attribution";
      note.textContent = attribution;
      this.container.append(note);
    }
    this.deck = window.createDeck({
      container: canvasHost,
      jsonInput: spec,
      tooltip: false,
      showError: false,
      handleEvent: (type, info) => {
        if (type === "deck-click-event") {
          if (info.object && this.onPick) this.onPick(info.object);
          else if (info.coordinate && this.onClick) this.onClick({ lon: info.coordinate[0], lat: info.coordinate[1] });
        }
      },
    });
    this.roads = (this.deck.props.layers || []).find((l) => l && l.id === ROADS) || null;
    this.container.dataset.ready = "1";
    if (this.pending) this.update(this.pending);
  }

  // Swap the data of the live layers; nothing else is sent.
  update(data) {
    if (!this.deck) { this.pending = data; return; }
    this.pending = null;
    const layers = [];
    for (const [id, template] of this.templates) {
      layers.push({ ...template, data: data[id] || [] });
    }
    const roads = this.roads;
    const target = {
      setProps: (props) => this.deck.setProps({ layers: roads ? [roads, ...props.layers] : props.layers }),
    };
    window.updateDeck({ layers }, target);
    for (const id of this.templates.keys()) this.container.dataset[`layer_${id}`] = String((data[id] || []).length);
  }
}
