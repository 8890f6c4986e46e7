// Units tracking: the unit table and a map of units moving live along their routes.

import { renderUnitRows } from "./board.js";
import { $, toastHistory } from "./dom.js";
import { LiveState } from "./livestate.js";
import { LiveMap, layerData } from "./map.js";
import { announce } from "./notify.js";
import { availableCount, countWith, unitsByCallsign } from "./selectors.js";
import { liveConnection, startSession } from "./session.js";
import { UnitStatus } from "./vocabulary.js";

const state = new LiveState();
const map = new LiveMap($("#map"));

function render() {
  const units = unitsByCallsign(state);
  renderUnitRows($("#unit-rows"), units, { state }, { position: true });
  $("#count-tracked").textContent = String(countWith(units, UnitStatus.DISPATCHED));
  $("#count-available").textContent = String(availableCount(units));
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
