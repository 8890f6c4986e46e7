// The reporter's tracking page, /track/{id}: follows one emergency live until it closes.

import { CONFIG } from "/views/config.js";
import { call } from "./api.js";
import { $, formatEta, statusBadge } from "./dom.js";
import { LiveState } from "./livestate.js";
import { LiveMap, layerData } from "./map.js";
import { unitLabel } from "./notify.js";
import { liveConnection, startSession } from "./session.js";
import { EmergencyStatus as S, OPEN_STATUSES, isOpen, typeLabel } from "./vocabulary.js";

const emergencyId = decodeURIComponent(location.pathname.split("/").pop());
const state = new LiveState();
const map = new LiveMap($("#map"));
const STEPS = [...OPEN_STATUSES, S.COMPLETED];
const TEXT = {
  [S.PENDING]: "Your report has been received. A dispatcher is assigning a unit.",
  [S.ASSIGNED]: "A unit is on its way.",
  [S.ON_SCENE]: "The unit is at the scene.",
  [S.COMPLETED]: "The response is complete.",
  [S.CANCELLED]: "This report was cancelled.",
};

$("#share-link").href = location.href;
$("#share-link").textContent = location.href;

let session = null; // set at start
let finished = false;

// The report closed a while ago and left the live state (issue 16): say so, and where its
// history is, instead of "not found". `info` is the 410 body or the emergency_archived data.
function renderArchived(info) {
  const status = info.emergency_status || info.status;
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
  const badge = statusBadge(status);
  badge.id = "status-badge";
  $("#status-badge").replaceWith(badge);
  $("#status-text").textContent =
    `This report was closed (${String(status).toLowerCase()}) at ${when(info.closed_at)} and ` +
    `moved to the history at ${when(info.archived_at)}. The dispatch centre keeps its full ` +
    "history: the event log (replay) and the DuckDB archive.";
  document.body.dataset.archived = "true";
  for (const li of document.querySelectorAll("#timeline li")) li.classList.remove("current");
  if (!finished) {
    finished = true;
    session?.connection()?.close();
  }
}

function render() {
  const e = state.emergencies.get(emergencyId);
  if (!e) {
    const archived = state.archived.get(emergencyId);
    if (archived) renderArchived(archived);
    return;
  }
  const badge = statusBadge(e.status);
  badge.id = "status-badge";
  $("#status-badge").replaceWith(badge);
  $("#status-text").textContent = TEXT[e.status] || e.status;
  if (e.closed_at && !isOpen(e)) {
    const until = new Date(Date.parse(e.closed_at) + CONFIG.archiveAfterS * 1000);
    $("#status-text").textContent +=
      ` This page follows it until about ${until.toLocaleString()}; then it moves to the history.`;
  }
  document.body.dataset.status = e.status;
  const reached = STEPS.indexOf(e.status);
  for (const li of document.querySelectorAll("#timeline li")) {
    const i = STEPS.indexOf(li.dataset.step);
    li.classList.toggle("done", e.status !== S.CANCELLED && i <= reached);
    li.classList.toggle("current", i === reached);
  }
  const unit = e.assigned_unit_id ? state.units.get(e.assigned_unit_id) : null;
  $("#fact-type").textContent = typeLabel(e.type);
  $("#fact-priority").textContent = `P${e.priority}`;
  $("#fact-unit").textContent = unit ? `${unitLabel(unit)} (${typeLabel(unit.type)})` :
    (e.assigned_unit_id || "—");
  $("#fact-eta").textContent = e.status === S.ASSIGNED && unit ? formatEta(unit.eta_s) : "—";
  $("#fact-description").textContent = e.description || "—";
  const units = unit && isOpen(e) ? [unit] : [];
  map.update(layerData({ emergencies: [e], units }));
  // A closed report is followed on until it moves to the history (renderArchived stops).
}

let frame = 0;
state.addEventListener("change", () => {
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
});

// The live feed (/api/stream) is for dispatchers and units; this page follows its one
// emergency's own stream, which anyone holding the id may read (the tracking view, as
// snapshots), and polls the same view if that stream cannot be opened. No token: the view
// is the same for every caller, so none goes into its URLs, and no token dialog.
const path = `/api/emergencies/${encodeURIComponent(emergencyId)}`;
const connect = liveConnection(state, () => ({
  token: null,
  streamUrl: `${path}/stream`,
  wsUrl: null,
  onUnauthorized: () => {},
  pollUrl: path,
  toState: (body) => ({ emergencies: [body.emergency || body], units: body.unit ? [body.unit] : [] }),
  onGone: (body) => renderArchived(body), // 410: it moved to the history while polled
}));

try {
  const e = await call("GET", `/api/emergencies/${encodeURIComponent(emergencyId)}`);
  const emergency = e.emergency || e;
  state.apply("snapshot", { emergencies: [emergency], units: e.unit ? [e.unit] : [] });
  render();
} catch (err) {
  if (err.status === 410) renderArchived(err.body);
  else if (err.status !== 404) $("#status-text").textContent = `Could not load the report: ${err.message}`;
  else $("#status-text").textContent = "Waiting for the report to be recorded…";
}

session = await startSession({ ask: false, connect: (token, s) => (finished ? null : connect(token, s)) });
window.dispatchwire = { state, map, live: session.connection };
