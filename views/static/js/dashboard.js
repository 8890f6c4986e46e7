// Dispatch dashboard: the board (pending queue, active incidents, unit board, live map)
// fed by the live connection, with the dispatcher's commands, keys and toasts.

import { call, newCommandId } from "./api.js";
import { toast, toastHistory } from "./dom.js";
import { mountBoard } from "./board.js";
import { LiveState } from "./livestate.js";
import { announce, rejectionToast } from "./notify.js";
import { REFUSED, liveConnection, startSession } from "./session.js";
import { EmergencyStatus } from "./vocabulary.js";

const state = new LiveState();
let session = null; // set at start
const busy = new Set(); // emergency ids with a command in flight
const sentCommands = new Set(); // ids of the commands this page sent: only theirs toast

// ------------------------------------------------------------------ commands

async function command(emergency, verb, body = {}) {
  busy.add(emergency.id);
  board.render();
  const commandId = newCommandId();
  sentCommands.add(commandId);
  if (sentCommands.size > 500) sentCommands.delete(sentCommands.values().next().value);
  try {
    await call("POST", `/api/emergencies/${encodeURIComponent(emergency.id)}/${verb}`,
      { token: session.token(), body: { command_id: commandId, ...body } });
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      await session.relogin(REFUSED, { reconnect: false });
    }
    if (err.status === 409) rejectionToast(commandId, err.message);
    else toast(null, "error", `${verb} failed`, err.message);
  } finally {
    busy.delete(emergency.id);
    board.render();
  }
}

const dispatch = (e, unitId = null) => command(e, "dispatch", unitId ? { unit_id: unitId } : {});
const complete = (e) => command(e, "complete");
const cancel = (e) => command(e, "cancel", { reason: "cancelled by dispatcher" });

const board = mountBoard({ state, commands: { dispatch, complete, cancel, busy } });

state.addEventListener("change", (ev) => {
  announce(ev.detail, state, { ownCommand: (id) => sentCommands.has(id) });
  board.scheduleRender();
});

// ------------------------------------------------------------------ keyboard

document.addEventListener("keydown", (ev) => {
  if (ev.target.closest("input, select, textarea, dialog") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (board.selectionKey(ev)) { ev.preventDefault(); return; }
  const current = board.selected();
  if (ev.key === "d" && current?.status === EmergencyStatus.PENDING) dispatch(current);
  else if (ev.key === "c" && current && current.status !== EmergencyStatus.PENDING) complete(current);
  else if (ev.key === "x" && current) cancel(current);
  else return;
  ev.preventDefault();
});

// ------------------------------------------------------------------ start

session = await startSession({ connect: liveConnection(state) });
window.dispatchwire = { state, map: board.map, live: session.connection, toasts: toastHistory };
board.render();
