// DOM helpers. Every piece of data goes in as textContent, never as HTML: descriptions
// and reporter names are typed by strangers.

import { EmergencyStatus, UnitStatus } from "./vocabulary.js";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// The colour of each status, on the board and the maps (tests/views/pixels.py reads them).
const E = EmergencyStatus;
const U = UnitStatus;

export const STATUS_RGB = {
  [E.PENDING]: [245, 158, 11],
  [E.ASSIGNED]: [59, 130, 246],
  [E.ON_SCENE]: [168, 85, 247],
  [E.COMPLETED]: [34, 197, 94],
  [E.CANCELLED]: [100, 116, 139],
  [U.AVAILABLE]: [34, 197, 94],
  [U.DISPATCHED]: [59, 130, 246],
  [U.RETURNING]: [20, 184, 166],
  [U.OUT_OF_SERVICE]: [100, 116, 139],
};

export function statusBadge(status) {
  return h("span", { class: `badge status-${String(status).toLowerCase()}` },
    String(status).replace("_", " "));
}

export function priorityBadge(priority) {
  return h("span", { class: `prio prio-${priority}`, title: `priority ${priority} (1 is the most urgent)` },
    `P${priority}`);
}

export function formatAge(iso, now = Date.now()) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

export function formatEta(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
}

export function formatDistance(m) {
  if (m === null || m === undefined) return "—";
  return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`;
}

export function haversineM(lat1, lon1, lat2, lon2) {
  const r = 6371000;
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 +
    Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * r * Math.asin(Math.sqrt(a));
}

// Toasts, one per change, deduplicated by key (the live message id) so a reconnect that
// replays messages never shows the same toast twice. At most MAX_TOASTS are on screen, in
// their own corner of the map (never over the queue or the unit board); a toast equal to
// one already shown (same kind, title and detail) is not stacked again, it counts up
// ("×3") and stays a little longer.
const shownToasts = new Set();
// Every toast shown (repeats included), newest last: what the page announced beyond the
// few seconds a toast stays (read by the browser tests, which may look later than that).
export const toastHistory = [];
const MAX_TOASTS = 3;
const TOAST_MS = 6000;

function toastTimers(node) {
  clearTimeout(node._leave);
  clearTimeout(node._remove);
  node.classList.remove("leaving");
  node._leave = setTimeout(() => node.classList.add("leaving"), TOAST_MS);
  node._remove = setTimeout(() => node.remove(), TOAST_MS + 600);
}

export function toast(key, kind, title, detail = "") {
  if (key) {
    if (shownToasts.has(key)) return;
    shownToasts.add(key);
    if (shownToasts.size > 2000) shownToasts.delete(shownToasts.values().next().value);
  }
  const stack = document.getElementById("toasts");
  if (!stack) return;
  toastHistory.push({ kind, title, detail });
  if (toastHistory.length > 500) toastHistory.shift();
  const signature = JSON.stringify([kind, title, detail]);
  const same = [...stack.children].find((n) => n.dataset.signature === signature);
  if (same) {
    const count = Number(same.dataset.count) + 1;
    same.dataset.count = String(count);
    same.querySelector(".repeat").textContent = `×${count}`;
    stack.append(same); // the newest goes last
    toastTimers(same);
    return;
  }
  const node = h("div", { class: `toast toast-${kind}`, role: "status",
    dataset: { kind, signature, count: "1" } },
  h("strong", {}, title, h("span", { class: "repeat" })), detail ? h("span", {}, detail) : null);
  stack.append(node);
  while (stack.children.length > MAX_TOASTS) stack.firstElementChild.remove();
  toastTimers(node);
}

// The quiet list of what concerns other people (their rejected commands): no toast, a line
// in the page's activity list, if it has one, newest first.
export function logActivity(kind, title, detail = "") {
  const list = document.getElementById("activity-list");
  if (!list) return;
  const at = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  list.prepend(h("li", { class: `activity-${kind}`, dataset: { kind } },
    h("time", {}, at), h("strong", {}, title), detail ? h("span", {}, detail) : null));
  while (list.children.length > 30) list.lastElementChild.remove();
  const count = document.getElementById("activity-count");
  if (count) count.textContent = String(Number(count.textContent || 0) + 1);
}
