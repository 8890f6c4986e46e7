// The dispatch board drawn from a LiveState: pending queue, active and closed incidents,
// unit table, details panel and map. The live dashboard mounts it with commands (dispatch,
// complete, cancel buttons); the replay mounts it read-only and with the replay's clock, so
// ages read as they did at that moment.
//
// What to show comes from the pure selectors (selectors.js); the renderers below draw it
// into the DOM nodes they are given; mountBoard holds the selection and wires the two.

import {
  $, formatAge, formatDistance, formatEta, h, priorityBadge, statusBadge,
} from "./dom.js";
import { CONFIG } from "/views/config.js";
import { LiveMap, layerData } from "./map.js";
import { unitLabel } from "./notify.js";
import {
  activeIncidents, availableCount, dispatchCandidates, pendingQueue, recentlyClosed,
  selectionOrder, unitsByCallsign,
} from "./selectors.js";
import { EmergencyStatus, UnitStatus, isActive, isOpen, typeLabel } from "./vocabulary.js";

// ---------------------------------------------------------------- renderers
//
// `view` is what every renderer may read: {state, selectedId, now() (ms), select(id),
// commands} (commands null for a read-only board: no buttons, no dispatch row).

const isBusy = (view, id) => Boolean(view.commands && view.commands.busy.has(id));

function incidentActions(view, e) {
  const { commands } = view;
  if (!commands) return [];
  const busy = isBusy(view, e.id);
  const button = (cls, action, label, run) => h("button", { class: cls, type: "button",
    "data-action": action, disabled: busy, onclick: (ev) => { ev.stopPropagation(); run(e); } }, label);
  const actions = [];
  if (e.status === EmergencyStatus.PENDING) actions.push(button("primary", "dispatch", "Dispatch", commands.dispatch));
  if (isActive(e)) actions.push(button("success", "complete", "Complete", commands.complete));
  if (isOpen(e)) actions.push(button("ghost", "cancel", "Cancel", commands.cancel));
  return actions;
}

function incidentRow(view, e) {
  const { state, selectedId, select } = view;
  const unit = e.assigned_unit_id ? state.units.get(e.assigned_unit_id) : null;
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
    h("span", { class: "type" }, typeLabel(e.type)),
    statusBadge(e.status),
    h("span", { class: "age", "data-since": e.reported_at }, formatAge(e.reported_at, view.now()))),
  h("p", { class: "description" }, e.description || "(no description)"),
  h("div", { class: "line3" },
    h("span", { class: "where" }, `${e.region} · ${e.lat.toFixed(4)}, ${e.lon.toFixed(4)}`),
    unit ? h("span", { class: "unit" }, `${unitLabel(unit)} · ETA ${formatEta(unit.eta_s)}`) : null,
    h("span", { class: "actions" }, incidentActions(view, e))));
}

// An incident list (<ol> with data-empty, the text shown when it is empty).
export function renderIncidentList(node, items, view) {
  node.replaceChildren(...items.map((e) => incidentRow(view, e)));
  if (!items.length) node.append(h("li", { class: "empty" }, node.dataset.empty));
}

// A unit table's row. With `view.select` the incident links to its details; with
// `position`, a last column says where the unit is.
function unitRow(u, view, { position = false } = {}) {
  const e = u.emergency_id ? view.state.emergencies.get(u.emergency_id) : null;
  const incident = e ? `${typeLabel(e.type)} P${e.priority}` : "—";
  return h("tr", { "data-unit": u.id, "data-status": u.status },
    h("th", { scope: "row" }, unitLabel(u)),
    h("td", {}, typeLabel(u.type)),
    h("td", {}, statusBadge(u.status)),
    h("td", {}, e && view.select ?
      h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); view.select(e.id); } }, incident) : incident),
    h("td", { class: "num" }, u.status === UnitStatus.DISPATCHED ? formatEta(u.eta_s) : "—"),
    position ? h("td", { class: "num pos" }, `${u.lat.toFixed(4)}, ${u.lon.toFixed(4)}`) : null);
}

export function renderUnitRows(node, units, view, options = {}) {
  node.replaceChildren(...units.map((u) => unitRow(u, view, options)));
}

function dispatchRow(view, e) {
  const options = dispatchCandidates(view.state, e);
  if (!options.length) return [h("p", { class: "warning" }, "No available unit fits this emergency.")];
  const best = options[0];
  const choice = h("select", { id: "override-unit", "aria-label": "Unit to dispatch" },
    h("option", { value: "" }, "Recommended unit (fastest by road)"),
    options.map((o) => h("option", { value: o.unit.id }, `${unitLabel(o.unit)} · ${formatDistance(o.distance)}`)));
  return [
    h("div", { class: "recommendation", "data-unit": best.unit.id },
      h("span", { class: "label" }, "Recommended"),
      h("strong", {}, unitLabel(best.unit)),
      h("span", {}, `${typeLabel(best.unit.type)} · ${formatDistance(best.distance)} away (straight line); the dispatcher picks by road travel time`)),
    h("div", { class: "dispatch-row" }, choice,
      h("button", { class: "primary", type: "button", "data-action": "dispatch-selected", disabled: isBusy(view, e.id),
        onclick: () => view.commands.dispatch(e, choice.value || null) }, "Dispatch")),
  ];
}

function decisionBlock(view, decision) {
  return h("div", { class: "decision" },
    h("p", {}, h("span", { class: "label" }, decision.overridden ? "Dispatched (override)" : "Dispatched"),
      h("strong", {}, unitLabel(view.state.units.get(decision.chosen_unit_id) || { id: decision.chosen_unit_id })),
      ` · ${formatDistance(decision.distance_m)} by road · ETA ${formatEta(decision.eta_s)}`),
    // Why this unit (issue 15): the worker's explanation, and each candidate's region,
    // marked when it is another region's unit (mutual aid).
    decision.explanation ? h("p", { class: "explanation" }, decision.explanation) : null,
    decision.leaves_uncovered ? h("p", { class: "warning coverage" }, `Leaves ${decision.leaves_uncovered} without cover`) : null,
    decision.candidates?.length ? h("table", { class: "candidates" },
      h("thead", {}, h("tr", {}, h("th", {}, "Candidate"), h("th", {}, "Region"), h("th", {}, "Road distance"), h("th", {}, "ETA"))),
      h("tbody", {}, decision.candidates.map((c) => h("tr", { class: c.unit_id === decision.chosen_unit_id ? "chosen" : "", "data-cross-region": c.cross_region ? "true" : "false" },
        h("td", {}, c.callsign || c.unit_id),
        h("td", {}, c.region ? (c.cross_region ? `${c.region} (mutual aid)` : c.region) : ""),
        h("td", { class: "num" }, formatDistance(c.distance_m)),
        h("td", { class: "num" }, formatEta(c.eta_s)))))) : null);
}

// The details panel of the selected incident (hidden when none is selected).
export function renderDetails(panel, e, view) {
  if (!e) { panel.hidden = true; panel.replaceChildren(); return; }
  panel.hidden = false;
  const body = [
    h("header", {}, priorityBadge(e.priority), h("h3", {}, `${typeLabel(e.type)} emergency`),
      statusBadge(e.status),
      h("button", { class: "ghost close", type: "button", "aria-label": "Close details",
        onclick: () => view.select(null) }, "×")),
    h("p", { class: "description" }, e.description || "(no description)"),
  ];
  const reporter = e.reporter || {};
  if (reporter.name || reporter.phone) {
    body.push(h("p", { class: "reporter" }, "Reporter: ", h("span", { class: "reporter-name" }, reporter.name || "—"),
      reporter.phone ? ` · ${reporter.phone}` : ""));
  }
  body.push(h("p", { class: "meta" }, `Reported ${formatAge(e.reported_at, view.now())} ago · ${e.region} · `,
    h("a", { href: `/track/${encodeURIComponent(e.id)}`, target: "_blank", rel: "noopener" }, "tracking page")));
  const decision = view.state.decisions.get(e.id);
  if (e.status === EmergencyStatus.PENDING && view.commands) body.push(...dispatchRow(view, e));
  if (decision) body.push(decisionBlock(view, decision));
  panel.replaceChildren(...body);
}

// ---------------------------------------------------------------- the board

/**
 * Options:
 *   state     the LiveState to draw
 *   commands  {dispatch(e, unitId), complete(e), cancel(e), busy: Set of emergency ids},
 *             or null for a read-only board (no buttons, no dispatch row)
 *   now       () => ms: the time ages are measured to (default: the wall clock)
 */
// How long a closed incident stays on the board before it moves to history (issue 16).
function archiveWindowText(seconds = CONFIG.archiveAfterS) {
  const span = seconds >= 3600 && seconds % 3600 === 0 ? `${seconds / 3600} h` :
    seconds >= 60 ? `${Math.round(seconds / 60)} min` : `${seconds} s`;
  return `kept ${span}, then in history (replay, DuckDB)`;
}

export function mountBoard({ state, commands = null, now = () => Date.now() }) {
  const nodes = {
    pending: $("#pending-list"), active: $("#active-list"), closed: $("#closed-list"),
    units: $("#unit-rows"), details: $("#details"),
    countPending: $("#count-pending"), countActive: $("#count-active"), countAvailable: $("#count-available"),
  };
  const view = { state, commands, now, selectedId: null, select };
  const note = document.getElementById("closed-note");
  if (note) note.textContent = archiveWindowText();
  let focusAfterRender = null;
  const map = new LiveMap($("#map"), { onPick: (obj) => { if (obj.kind === "emergency") select(obj.id); } });

  function render() {
    const pending = pendingQueue(state);
    const active = activeIncidents(state);
    const units = unitsByCallsign(state);
    renderIncidentList(nodes.pending, pending, view);
    renderIncidentList(nodes.active, active, view);
    renderIncidentList(nodes.closed, recentlyClosed(state), view);
    renderUnitRows(nodes.units, units, view);
    nodes.countPending.textContent = String(pending.length);
    nodes.countActive.textContent = String(active.length);
    nodes.countAvailable.textContent = String(availableCount(units));
    renderDetails(nodes.details, view.selectedId ? state.emergencies.get(view.selectedId) : null, view);
    map.update(layerData({ emergencies: state.openEmergencies(), units }));
    if (focusAfterRender) {
      document.querySelector(`.incident[data-id="${CSS.escape(focusAfterRender)}"]`)?.focus();
      focusAfterRender = null;
    }
  }

  function select(id) {
    view.selectedId = id;
    focusAfterRender = id;
    render();
  }

  // Many messages, one render per frame.
  let frame = 0;
  function scheduleRender() {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; render(); });
  }

  // j/k (or arrows) move through the open incidents, Escape closes the details; true if
  // the key was one of these.
  function selectionKey(ev) {
    const order = selectionOrder(state);
    const index = order.findIndex((e) => e.id === view.selectedId);
    if (ev.key === "j" || ev.key === "ArrowDown") { if (order.length) select(order[Math.min(order.length - 1, index + 1)].id); }
    else if (ev.key === "k" || ev.key === "ArrowUp") { if (order.length) select(order[Math.max(0, index - 1)].id); }
    else if (ev.key === "Escape") select(null);
    else return false;
    return true;
  }

  setInterval(() => {
    const at = now();
    for (const node of document.querySelectorAll("[data-since]")) node.textContent = formatAge(node.dataset.since, at);
  }, 1000);

  return {
    map,
    render,
    scheduleRender,
    select,
    selectionKey,
    // The selected incident while it is open (pending or active), else null.
    selected: () => selectionOrder(state).find((e) => e.id === view.selectedId) || null,
  };
}
