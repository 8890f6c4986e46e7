// The dispatch board drawn from a LiveState: pending queue, active and closed incidents,
// unit table, details panel and map. The live dashboard mounts it with commands (dispatch,
// complete, cancel buttons); the replay mounts it read-only and with the replay's clock, so
// ages read as they did at that moment.

import {
  $, formatAge, formatDistance, formatEta, h, haversineM, priorityBadge, statusBadge,
} from "./dom.js";
import { LiveMap, layerData } from "./map.js";
import { unitLabel } from "./notify.js";
import {
  EmergencyStatus, FITTING_UNIT_TYPES, UnitStatus, isActive, isClosed, isDispatchable, isOpen,
  typeLabel,
} from "./vocabulary.js";

function byQueueOrder(a, b) {
  return (a.priority - b.priority) || (Date.parse(a.reported_at) - Date.parse(b.reported_at));
}

/**
 * Options:
 *   state     the LiveState to draw
 *   commands  {dispatch(e, unitId), complete(e), cancel(e), busy: Set of emergency ids},
 *             or null for a read-only board (no buttons, no dispatch row)
 *   now       () => ms: the time ages are measured to (default: the wall clock)
 */
export function mountBoard({ state, commands = null, now = () => Date.now() }) {
  let selectedId = null;
  let focusAfterRender = null;
  const isBusy = (id) => Boolean(commands && commands.busy.has(id));
  const map = new LiveMap($("#map"), { onPick: (obj) => { if (obj.kind === "emergency") select(obj.id); } });

  function pending() {
    return [...state.emergencies.values()].filter((e) => e.status === EmergencyStatus.PENDING).sort(byQueueOrder);
  }

  function active() {
    return [...state.emergencies.values()].filter(isActive)
      .sort(byQueueOrder);
  }

  function closed() {
    return [...state.emergencies.values()].filter(isClosed)
      .sort((a, b) => Date.parse(b.closed_at || b.reported_at) - Date.parse(a.closed_at || a.reported_at))
      .slice(0, 8);
  }

  // The unit the worker would most likely pick (straight-line distance; the worker decides
  // by travel time on the road network and says so in the dispatch decision), and the rest
  // of the fitting available units for an override.
  function candidates(emergency) {
    const fitting = FITTING_UNIT_TYPES[emergency.type] || [];
    return [...state.units.values()]
      .filter((u) => isDispatchable(u) && fitting.includes(u.type))
      .map((u) => ({ unit: u, distance: haversineM(emergency.lat, emergency.lon, u.lat, u.lon) }))
      .sort((a, b) => a.distance - b.distance);
  }

  function incidentActions(e) {
    if (!commands) return [];
    const busy = isBusy(e.id);
    const actions = [];
    if (e.status === EmergencyStatus.PENDING) {
      actions.push(h("button", { class: "primary", type: "button", "data-action": "dispatch", disabled: busy,
        onclick: (ev) => { ev.stopPropagation(); commands.dispatch(e); } }, "Dispatch"));
    }
    if (isActive(e)) {
      actions.push(h("button", { class: "success", type: "button", "data-action": "complete", disabled: busy,
        onclick: (ev) => { ev.stopPropagation(); commands.complete(e); } }, "Complete"));
    }
    if (isOpen(e)) {
      actions.push(h("button", { class: "ghost", type: "button", "data-action": "cancel", disabled: busy,
        onclick: (ev) => { ev.stopPropagation(); commands.cancel(e); } }, "Cancel"));
    }
    return actions;
  }

  function incidentRow(e) {
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
      h("span", { class: "age", "data-since": e.reported_at }, formatAge(e.reported_at, now()))),
    h("p", { class: "description" }, e.description || "(no description)"),
    h("div", { class: "line3" },
      h("span", { class: "where" }, `${e.region} · ${e.lat.toFixed(4)}, ${e.lon.toFixed(4)}`),
      unit ? h("span", { class: "unit" }, `${unitLabel(unit)} · ETA ${formatEta(unit.eta_s)}`) : null,
      h("span", { class: "actions" }, incidentActions(e))));
  }

  function fillList(node, items) {
    node.replaceChildren(...items.map(incidentRow));
    if (!items.length) node.append(h("li", { class: "empty" }, node.dataset.empty));
  }

  function unitRow(u) {
    const e = u.emergency_id ? state.emergencies.get(u.emergency_id) : null;
    return h("tr", { "data-unit": u.id, "data-status": u.status },
      h("th", { scope: "row" }, unitLabel(u)),
      h("td", {}, typeLabel(u.type)),
      h("td", {}, statusBadge(u.status)),
      h("td", {}, e ? h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); select(e.id); } },
        `${typeLabel(e.type)} P${e.priority}`) : "—"),
      h("td", { class: "num" }, u.status === UnitStatus.DISPATCHED ? formatEta(u.eta_s) : "—"));
  }

  function dispatchRow(e) {
    const options = candidates(e);
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
        h("button", { class: "primary", type: "button", "data-action": "dispatch-selected", disabled: isBusy(e.id),
          onclick: () => commands.dispatch(e, choice.value || null) }, "Dispatch")),
    ];
  }

  function renderDetails() {
    const panel = $("#details");
    const e = selectedId ? state.emergencies.get(selectedId) : null;
    if (!e) { panel.hidden = true; panel.replaceChildren(); return; }
    panel.hidden = false;
    const body = [
      h("header", {}, priorityBadge(e.priority), h("h3", {}, `${typeLabel(e.type)} emergency`),
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
    body.push(h("p", { class: "meta" }, `Reported ${formatAge(e.reported_at, now())} ago · ${e.region} · `,
      h("a", { href: `/track/${encodeURIComponent(e.id)}`, target: "_blank", rel: "noopener" }, "tracking page")));

    const decision = state.decisions.get(e.id);
    if (e.status === EmergencyStatus.PENDING && commands) body.push(...dispatchRow(e));
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
    $("#count-available").textContent = String(units.filter((u) => u.status === UnitStatus.AVAILABLE).length);
    renderDetails();
    map.update(layerData({ emergencies: state.openEmergencies(), units }));
    if (focusAfterRender) {
      document.querySelector(`.incident[data-id="${CSS.escape(focusAfterRender)}"]`)?.focus();
      focusAfterRender = null;
    }
  }

  function select(id) {
    selectedId = id;
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
    const order = [...pending(), ...active()];
    const index = order.findIndex((e) => e.id === selectedId);
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
    selected: () => [...pending(), ...active()].find((e) => e.id === selectedId) || null,
  };
}
