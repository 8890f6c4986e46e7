// Units tracking: the unit table and a map of units moving live along their routes.

import { $, formatEta, h, statusBadge, toastHistory } from "./dom.js";
import { LiveState } from "./live.js";
import { LiveMap, layerData } from "./map.js";
import { announce, unitLabel } from "./notify.js";
import { liveConnection, startSession } from "./session.js";
import { UnitStatus, typeLabel } from "./vocabulary.js";

const state = new LiveState();
const map = new LiveMap($("#map"));

function unitRow(u) {
  const e = u.emergency_id ? state.emergencies.get(u.emergency_id) : null;
  return h("tr", { "data-unit": u.id, "data-status": u.status },
    h("th", { scope: "row" }, unitLabel(u)),
    h("td", {}, typeLabel(u.type)),
    h("td", {}, statusBadge(u.status)),
    h("td", {}, e ? `${typeLabel(e.type)} P${e.priority}` : "—"),
    h("td", { class: "num" }, u.status === UnitStatus.DISPATCHED ? formatEta(u.eta_s) : "—"),
    h("td", { class: "num pos" }, `${u.lat.toFixed(4)}, ${u.lon.toFixed(4)}`));
}

function render() {
  const units = [...state.units.values()].sort((a, b) => unitLabel(a).localeCompare(unitLabel(b)));
  $("#unit-rows").replaceChildren(...units.map(unitRow));
  $("#count-tracked").textContent = String(units.filter((u) => u.status === UnitStatus.DISPATCHED).length);
  $("#count-available").textContent = String(units.filter((u) => u.status === UnitStatus.AVAILABLE).length);
  map.update(layerData({ emergencies: state.openEmergencies(), units }));
}

let frame = 0;
state.addEventListener("change", (ev) => {
  announce(ev.detail, state);
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
});

const session = await startSession({ connect: liveConnection(state) });
window.dispatchwire = { state, map, live: session.connection, toasts: toastHistory };
render();
