// Dispatch dashboard: pending queue, active incidents, unit board, live map, toasts.

import { call, ensureToken, newCommandId } from "./api.js";
import {
  $, FITTING_UNIT_TYPES, TYPE_LABEL, formatAge, formatDistance, formatEta, h, haversineM,
  priorityBadge, statusBadge, toast,
} from "./dom.js";
import { LiveState, connectLive, mountIndicator } from "./live.js";
import { LiveMap, layerData } from "./map.js";
import { announce, unitLabel } from "./notify.js";

const state = new LiveState();
let token = "";
let selectedId = null;
const busy = new Set(); // emergency ids with a command in flight

const map = new LiveMap($("#map"), { onPick: (obj) => { if (obj.kind === "emergency") select(obj.id); } });

function byQueueOrder(a, b) {
  return (a.priority - b.priority) || (Date.parse(a.reported_at) - Date.parse(b.reported_at));
}

function pending() {
  return [...state.emergencies.values()].filter((e) => e.status === "PENDING").sort(byQueueOrder);
}

function active() {
  return [...state.emergencies.values()].filter((e) => e.status === "ASSIGNED" || e.status === "ON_SCENE")
    .sort(byQueueOrder);
}

function closed() {
  return [...state.emergencies.values()].filter((e) => e.status === "COMPLETED" || e.status === "CANCELLED")
    .sort((a, b) => Date.parse(b.closed_at || b.reported_at) - Date.parse(a.closed_at || a.reported_at))
    .slice(0, 8);
}

// The unit the worker would most likely pick (straight-line distance; the worker decides
// by travel time on the road network and says so in the dispatch decision), and the rest
// of the fitting available units for an override.
function candidates(emergency) {
  const fitting = FITTING_UNIT_TYPES[emergency.type] || [];
  return [...state.units.values()]
    .filter((u) => u.status === "AVAILABLE" && fitting.includes(u.type))
    .map((u) => ({ unit: u, distance: haversineM(emergency.lat, emergency.lon, u.lat, u.lon) }))
    .sort((a, b) => a.distance - b.distance);
}

// ------------------------------------------------------------------ commands

async function command(emergency, verb, body = {}) {
  busy.add(emergency.id);
  render();
  try {
    await call("POST", `/api/emergencies/${encodeURIComponent(emergency.id)}/${verb}`,
      { token, body: { command_id: newCommandId(), ...body } });
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      token = await ensureToken({ force: true, message: "The server refused that token." });
    }
    toast(null, "error", `${verb} failed`, err.message);
  } finally {
    busy.delete(emergency.id);
    render();
  }
}

const dispatch = (e, unitId = null) => command(e, "dispatch", unitId ? { unit_id: unitId } : {});
const complete = (e) => command(e, "complete");
const cancel = (e) => command(e, "cancel", { reason: "cancelled by dispatcher" });

// ------------------------------------------------------------------ rendering

function incidentRow(e) {
  const unit = e.assigned_unit_id ? state.units.get(e.assigned_unit_id) : null;
  const isBusy = busy.has(e.id);
  const actions = [];
  if (e.status === "PENDING") {
    actions.push(h("button", { class: "primary", type: "button", "data-action": "dispatch", disabled: isBusy,
      onclick: (ev) => { ev.stopPropagation(); dispatch(e); } }, "Dispatch"));
  }
  if (e.status === "ASSIGNED" || e.status === "ON_SCENE") {
    actions.push(h("button", { class: "success", type: "button", "data-action": "complete", disabled: isBusy,
      onclick: (ev) => { ev.stopPropagation(); complete(e); } }, "Complete"));
  }
  if (e.status === "PENDING" || e.status === "ASSIGNED" || e.status === "ON_SCENE") {
    actions.push(h("button", { class: "ghost", type: "button", "data-action": "cancel", disabled: isBusy,
      onclick: (ev) => { ev.stopPropagation(); cancel(e); } }, "Cancel"));
  }
  return h("li", {
    class: `incident status-${e.status.toLowerCase()}${e.id === selectedId ? " selected" : ""}`,
    tabindex: "0",
    "data-id": e.id,
    "data-status": e.status,
    "aria-selected": e.id === selectedId ? "true" : "false",
    onclick: () => select(e.id),
    onkeydown: (ev) => { if (ev.key === "Enter" && ev.target === ev.currentTarget) select(e.id); },
  },
  h("div", { class: "line1" },
    priorityBadge(e.priority),
    h("span", { class: "type" }, TYPE_LABEL[e.type] || e.type),
    statusBadge(e.status),
    h("span", { class: "age", "data-since": e.reported_at }, formatAge(e.reported_at))),
  h("p", { class: "description" }, e.description || "(no description)"),
  h("div", { class: "line3" },
    h("span", { class: "where" }, `${e.region} · ${e.lat.toFixed(4)}, ${e.lon.toFixed(4)}`),
    unit ? h("span", { class: "unit" }, `${unitLabel(unit)} · ETA ${formatEta(unit.eta_s)}`) : null,
    h("span", { class: "actions" }, actions)));
}

function fillList(node, items) {
  node.replaceChildren(...items.map(incidentRow));
  if (!items.length) node.append(h("li", { class: "empty" }, node.dataset.empty));
}

function unitRow(u) {
  const e = u.emergency_id ? state.emergencies.get(u.emergency_id) : null;
  return h("tr", { "data-unit": u.id, "data-status": u.status },
    h("th", { scope: "row" }, unitLabel(u)),
    h("td", {}, TYPE_LABEL[u.type] || u.type),
    h("td", {}, statusBadge(u.status)),
    h("td", {}, e ? h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); select(e.id); } },
      `${TYPE_LABEL[e.type] || e.type} P${e.priority}`) : "—"),
    h("td", { class: "num" }, u.status === "DISPATCHED" ? formatEta(u.eta_s) : "—"));
}

function renderDetails() {
  const panel = $("#details");
  const e = selectedId ? state.emergencies.get(selectedId) : null;
  if (!e) { panel.hidden = true; panel.replaceChildren(); return; }
  panel.hidden = false;
  const body = [
    h("header", {}, priorityBadge(e.priority), h("h3", {}, `${TYPE_LABEL[e.type] || e.type} emergency`),
      statusBadge(e.status),
      h("button", { class: "ghost close", type: "button", "aria-label": "Close details",
        onclick: () => select(null) }, "×")),
    h("p", { class: "description" }, e.description || "(no description)"),
  ];
  const reporter = e.reporter || {};
  if (reporter.name || reporter.phone) {
    body.push(h("p", { class: "reporter" }, "Reporter: ", h("span", { class: "reporter-name" }, reporter.name || "—"),
      reporter.phone ? ` · ${reporter.phone}` : ""));
  }
  body.push(h("p", { class: "meta" }, `Reported ${formatAge(e.reported_at)} ago · ${e.region} · `,
    h("a", { href: `/track/${encodeURIComponent(e.id)}`, target: "_blank", rel: "noopener" }, "tracking page")));

  const decision = state.decisions.get(e.id);
  if (e.status === "PENDING") {
    const options = candidates(e);
    if (!options.length) {
      body.push(h("p", { class: "warning" }, "No available unit fits this emergency."));
    } else {
      const best = options[0];
      body.push(h("div", { class: "recommendation", "data-unit": best.unit.id },
        h("span", { class: "label" }, "Recommended"),
        h("strong", {}, unitLabel(best.unit)),
        h("span", {}, `${TYPE_LABEL[best.unit.type]} · ${formatDistance(best.distance)} away (straight line); the dispatcher picks by road travel time`)));
      const select = h("select", { id: "override-unit", "aria-label": "Unit to dispatch" },
        h("option", { value: "" }, "Recommended unit (fastest by road)"),
        options.map((o) => h("option", { value: o.unit.id }, `${unitLabel(o.unit)} · ${formatDistance(o.distance)}`)));
      body.push(h("div", { class: "dispatch-row" }, select,
        h("button", { class: "primary", type: "button", "data-action": "dispatch-selected", disabled: busy.has(e.id),
          onclick: () => dispatch(e, select.value || null) }, "Dispatch")));
    }
  }
  if (decision) {
    body.push(h("div", { class: "decision" },
      h("p", {}, h("span", { class: "label" }, decision.overridden ? "Dispatched (override)" : "Dispatched"),
        h("strong", {}, unitLabel(state.units.get(decision.chosen_unit_id) || { id: decision.chosen_unit_id })),
        ` · ${formatDistance(decision.distance_m)} by road · ETA ${formatEta(decision.eta_s)}`),
      decision.candidates?.length ? h("table", { class: "candidates" },
        h("thead", {}, h("tr", {}, h("th", {}, "Candidate"), h("th", {}, "Road distance"), h("th", {}, "ETA"))),
        h("tbody", {}, decision.candidates.map((c) => h("tr", { class: c.unit_id === decision.chosen_unit_id ? "chosen" : "" },
          h("td", {}, c.callsign || c.unit_id), h("td", { class: "num" }, formatDistance(c.distance_m)),
          h("td", { class: "num" }, formatEta(c.eta_s)))))) : null));
  }
  panel.replaceChildren(...body);
}

function render() {
  const p = pending();
  const a = active();
  fillList($("#pending-list"), p);
  fillList($("#active-list"), a);
  fillList($("#closed-list"), closed());
  const units = [...state.units.values()].sort((x, y) => (x.callsign || x.id).localeCompare(y.callsign || y.id));
  $("#unit-rows").replaceChildren(...units.map(unitRow));
  $("#count-pending").textContent = String(p.length);
  $("#count-active").textContent = String(a.length);
  $("#count-available").textContent = String(units.filter((u) => u.status === "AVAILABLE").length);
  renderDetails();
  map.update(layerData({ emergencies: state.openEmergencies(), units }));
  if (focusAfterRender) { document.querySelector(`.incident[data-id="${CSS.escape(focusAfterRender)}"]`)?.focus(); focusAfterRender = null; }
}

let focusAfterRender = null;
function select(id) {
  selectedId = id;
  focusAfterRender = id;
  render();
}

// Only moving units between full renders: the map and the ETA cells.
let frame = 0;
function scheduleRender() {
  if (frame) return;
  frame = requestAnimationFrame(() => { frame = 0; render(); });
}

state.addEventListener("change", (ev) => {
  announce(ev.detail, state);
  scheduleRender();
});

// ------------------------------------------------------------------ keyboard

document.addEventListener("keydown", (ev) => {
  if (ev.target.closest("input, select, textarea, dialog") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const order = [...pending(), ...active()];
  const index = order.findIndex((e) => e.id === selectedId);
  const current = index >= 0 ? order[index] : null;
  if (ev.key === "j" || ev.key === "ArrowDown") { if (order.length) select(order[Math.min(order.length - 1, index + 1)].id); }
  else if (ev.key === "k" || ev.key === "ArrowUp") { if (order.length) select(order[Math.max(0, index - 1)].id); }
  else if (ev.key === "d" && current?.status === "PENDING") dispatch(current);
  else if (ev.key === "c" && current && current.status !== "PENDING") complete(current);
  else if (ev.key === "x" && current) cancel(current);
  else if (ev.key === "Escape") select(null);
  else return;
  ev.preventDefault();
});

setInterval(() => {
  for (const node of document.querySelectorAll("[data-since]")) node.textContent = formatAge(node.dataset.since);
}, 1000);

// ------------------------------------------------------------------ start

$("#change-token").addEventListener("click", async () => {
  token = await ensureToken({ force: true });
  live.close();
  live = start();
});

function start() {
  return connectLive(state, {
    token,
    onStatus: indicator,
    onUnauthorized: async () => {
      token = await ensureToken({ force: true, message: "The server refused that token." });
      live.close();
      live = start();
    },
  });
}

const indicator = mountIndicator($("#live-indicator"), state);
token = await ensureToken();
let live = start();
window.dispatchwire = { state, map, live: () => live };
render();
