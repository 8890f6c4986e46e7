// The live map: pydeck's deck.gl bundle (/static/vendor/deck.js, globals createDeck and
// updateDeck) drawing the spec built in Python (/views/map/base.json).
//
// The deck is created once. Updates pass only the live layers, with new data, through
// updateDeck; the roads layer instance made at creation is put back in front of them, so
// deck.gl sees the same layer object and never re-processes the streets.

import { STATUS_RGB } from "./dom.js";
import { UnitStatus } from "./vocabulary.js";

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
  const tracked = units.filter((u) => (routesFor ? routesFor(u) : u.status === UnitStatus.DISPATCHED) &&
    Array.isArray(u.route) && u.route.length > 1);
  const routes = tracked.map((u) => ({
    id: u.id,
    path: routePath(u),
    color: [...STATUS_RGB[UnitStatus.DISPATCHED], 220],
  }));
  return { routes, emergencies: em, units: un, labels: stackedLabels(un) };
}

// Units parked together (a station) get one label listing them all, one callsign a line,
// instead of labels drawn over each other. Only exact positions are grouped here; labels
// that still collide at the current zoom are merged by LiveMap (declutter), which knows
// where they land on the screen.
function stackedLabels(units) {
  const groups = new Map();
  for (const u of units) {
    const key = `${u.position[0].toFixed(5)},${u.position[1].toFixed(5)}`;
    const group = groups.get(key);
    if (group) group.names.push(u.label);
    else groups.set(key, { position: u.position, names: [u.label] });
  }
  return [...groups.values()].map((g) => ({ position: g.position, names: g.names.sort() }));
}

// The label box on screen, from the TextLayer of mapspec.py (12 px monospace, anchored
// above the marker): about 0.6 em a character, 14 px a line, 16 px above the point.
const LABEL_CHAR_PX = 7.5;
const LABEL_LINE_PX = 14;
const LABEL_OFFSET_PX = 16;

const LABEL_MAX_LINES = 6;

// A callsign a line; a crowd (zoomed far out) shows its first few and how many more.
function labelText(names) {
  if (names.length <= LABEL_MAX_LINES) return names.join("\n");
  return [...names.slice(0, LABEL_MAX_LINES - 1), `+${names.length - LABEL_MAX_LINES + 1} more`].join("\n");
}

function labelBox([x, y], allNames) {
  const names = labelText(allNames).split("\n");
  const width = Math.max(...names.map((n) => n.length)) * LABEL_CHAR_PX + 6;
  const height = names.length * LABEL_LINE_PX + 2;
  return { left: x - width / 2, right: x + width / 2, top: y - LABEL_OFFSET_PX - height, bottom: y - LABEL_OFFSET_PX + 4 };
}

const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;

// Merge labels whose boxes overlap at this viewport into one (at the first one's place),
// until none overlap; `project` maps [lon, lat] to screen pixels.
function declutter(groups, project) {
  const placed = [];
  for (const g of groups) {
    const at = project(g.position);
    let item = { position: g.position, at, names: [...g.names] };
    item.box = labelBox(at, item.names);
    for (let hit = placed.findIndex((p) => overlaps(p.box, item.box)); hit >= 0;
      hit = placed.findIndex((p) => overlaps(p.box, item.box))) {
      const into = placed.splice(hit, 1)[0];
      item = { position: into.position, at: into.at, names: [...into.names, ...item.names].sort() };
      item.box = labelBox(item.at, item.names);
    }
    placed.push(item);
  }
  return placed.map((p) => ({ position: p.position, names: p.names, label: labelText(p.names), box: p.box }));
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
    // Labels are decluttered for a zoom; zooming in or out re-runs it (once a frame).
    this.labelZoom = null;
    this.deck.setProps({ onViewStateChange: ({ viewState }) => {
      if (this.last && this.labelZoom !== null && Math.abs(viewState.zoom - this.labelZoom) > 0.05 && !this.relabel) {
        this.relabel = requestAnimationFrame(() => { this.relabel = 0; this.update(this.last); });
      }
    } });
    this.container.dataset.ready = "1";
    if (this.pending) this.update(this.pending);
  }

  // Swap the data of the live layers; nothing else is sent.
  update(data) {
    if (!this.deck) { this.pending = data; return; }
    if (!this.deck.isInitialized) {
      // No viewport to declutter for until deck.gl has its canvas: try again next frame.
      this.pending = data;
      if (!this.waiting) {
        // (an update since may have drawn already and taken the pending data: nothing left)
        this.waiting = requestAnimationFrame(() => { this.waiting = 0; if (this.pending) this.update(this.pending); });
      }
      return;
    }
    this.pending = null;
    this.last = data;
    const viewport = this.deck.getViewports()[0];
    this.labelZoom = viewport ? viewport.zoom : null;
    const project = viewport ? (p) => viewport.project(p) : () => [0, 0];
    this.labels = viewport ? declutter(data.labels || [], project)
      : (data.labels || []).map((g) => ({ ...g, label: labelText(g.names) }));
    const layers = [];
    for (const [id, template] of this.templates) {
      layers.push({ ...template, data: id === "labels" ? this.labels : (data[id] || []) });
    }
    const roads = this.roads;
    const target = {
      setProps: (props) => this.deck.setProps({ layers: roads ? [roads, ...props.layers] : props.layers }),
    };
    window.updateDeck({ layers }, target);
    for (const layer of layers) this.container.dataset[`layer_${layer.id}`] = String(layer.data.length);
  }
}
