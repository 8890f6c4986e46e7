// Replay mode: the dispatch board, read-only, fed by the replay stream of a time window
// of the event log instead of the live connection. Window, speed, play/pause (Space) and
// a time bar that also jumps.

import { $ } from "./dom.js";
import { mountBoard } from "./board.js";
import { LiveState } from "./livestate.js";
import { announce } from "./notify.js";
import { ReplayFeed } from "./replayfeed.js";
import { REFUSED, startSession } from "./session.js";

const HOUR_MS = 3600 * 1000;

const state = new LiveState();
const feed = new ReplayFeed(state);
const board = mountBoard({ state, now: () => (feed.fromMs === null ? Date.now() : feed.time()) });

const fromInput = $("#replay-from");
const toInput = $("#replay-to");
const speedSelect = $("#replay-speed");
const playButton = $("#replay-play");
const bar = $("#timebar");
const statusLine = $("#replay-status");
let windowChanged = false; // the inputs differ from the window being replayed
let dragging = false;

// ------------------------------------------------------------------ the window

const pad = (n) => String(n).padStart(2, "0");

// datetime-local wants local time without a zone, to the second.
function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function clockText(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function dateText(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clockText(ms)}`;
}

// The last hour; the end rounded up to the second, so nothing of the last second is lost.
function defaultWindow() {
  const to = Math.ceil(Date.now() / 1000) * 1000;
  fromInput.value = toLocalInput(to - HOUR_MS);
  toInput.value = toLocalInput(to);
}

function readWindow() {
  const fromMs = new Date(fromInput.value).getTime();
  const toMs = new Date(toInput.value).getTime();
  fromInput.setAttribute("aria-invalid", String(!Number.isFinite(fromMs)));
  toInput.setAttribute("aria-invalid", String(!Number.isFinite(toMs) || toMs <= fromMs));
  if (!Number.isFinite(fromMs)) return { error: "From: enter a date and time." };
  if (!Number.isFinite(toMs)) return { error: "To: enter a date and time." };
  if (toMs <= fromMs) return { error: "To: must be after From." };
  return { fromMs, toMs };
}

// ------------------------------------------------------------------ play / pause

function play() {
  if (feed.phase === "paused" && !windowChanged) { feed.resume(); return; }
  const win = readWindow();
  if (win.error) { showStatus("error", win.error); return; }
  windowChanged = false;
  feed.start({ ...win, speed: speedSelect.value });
  bar.min = String(win.fromMs);
  bar.max = String(win.toMs);
  tick();
  $("#bar-from").textContent = clockText(win.fromMs);
  $("#bar-to").textContent = clockText(win.toMs);
}

function toggle() {
  if (feed.connected) feed.pause();
  else play();
}

$("#replay-window").addEventListener("submit", (ev) => { ev.preventDefault(); toggle(); });
$("#replay-restart").addEventListener("click", () => { windowChanged = true; play(); });
speedSelect.addEventListener("change", () => feed.setSpeed(speedSelect.value));
for (const input of [fromInput, toInput]) {
  input.addEventListener("change", () => { windowChanged = true; readWindow(); });
}

// The bar follows the replay unless someone holds it; letting go (or an arrow key) jumps.
bar.addEventListener("input", () => { dragging = true; updateClock(Number(bar.value)); });
bar.addEventListener("change", () => { dragging = false; feed.seek(Number(bar.value)); });

// ------------------------------------------------------------------ showing it

const PHASE_TEXT = {
  idle: () => "Choose a window and press play.",
  connecting: () => "Opening the replay…",
  playing: () => `Playing at ${speedSelect.value === "max" ? "maximum speed" : `${speedSelect.value}×`}`,
  paused: () => `Paused at ${dateText(feed.time())}`,
  ended: () => "End of the window",
  error: () => "The replay could not be played",
};

function showStatus(phase, detail = "") {
  statusLine.dataset.phase = phase;
  const counts = feed.windowEvents !== null ? ` · ${feed.received} of ${feed.windowEvents} events` : "";
  statusLine.textContent = `${(PHASE_TEXT[phase] || PHASE_TEXT.idle)()}${counts}${detail ? ` — ${detail}` : ""}`;
  const running = phase === "playing" || phase === "connecting";
  playButton.textContent = running ? "Pause" : (phase === "paused" && !windowChanged ? "Resume" : "Play");
  playButton.setAttribute("aria-pressed", String(running));
  document.body.dataset.replayPhase = phase;
}

function updateClock(ms) {
  const clock = $("#replay-clock");
  clock.textContent = feed.fromMs === null ? "—" : dateText(ms);
  bar.setAttribute("aria-valuetext", clock.textContent);
}

// The bar and the clock follow the replay time (it runs on between messages).
function tick() {
  if (feed.fromMs === null || dragging) return;
  const t = feed.time();
  bar.value = String(t);
  updateClock(t);
}

setInterval(() => {
  tick();
  if (feed.phase === "playing") showStatus(feed.phase, feed.detail);
}, 100);

feed.addEventListener("status", (ev) => {
  showStatus(ev.detail.phase, ev.detail.detail);
  tick();
  board.scheduleRender();
});

let session = null; // set at start
feed.addEventListener("unauthorized", () => session?.relogin(REFUSED));

state.addEventListener("change", (ev) => {
  // At full speed a toast per change would only flicker past. A unit that first appears
  // (the fleet being seeded inside the window) is no change worth a toast either.
  if (speedSelect.value !== "max" && feed.phase === "playing") {
    const changes = ev.detail.changes.filter((c) => !(c.kind === "unit_status" && !c.before));
    if (changes.length) announce({ ...ev.detail, changes }, state);
  }
  board.scheduleRender();
});

// ------------------------------------------------------------------ keyboard

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const target = ev.target;
  // Space on a focused button presses it already; in a field it types or opens a list.
  if (ev.key === " " && !target.closest("button, select, textarea, dialog, input:not([type=range])")) {
    ev.preventDefault();
    toggle();
    return;
  }
  if (target.closest("input, select, textarea, dialog")) return;
  if (board.selectionKey(ev)) ev.preventDefault();
});

// ------------------------------------------------------------------ start

defaultWindow();
showStatus("idle");
// The replay feed is not a standing connection: it reads the token when it starts.
session = await startSession({ connect: (token) => { feed.token = token; return null; } });
window.dispatchwire = { state, map: board.map, replay: feed };
board.render();
