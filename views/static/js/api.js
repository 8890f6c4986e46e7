// REST calls and the authority token (asked once, kept in localStorage).

import { CONFIG } from "/views/config.js";

const TOKEN_KEY = "dispatchwire.token";

export function storedToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

// Resolves with the token, asking for it in the page's <dialog id="token-dialog"> if none
// is stored yet (or if `force`, after the server refused the stored one).
export function ensureToken({ force = false, message = "" } = {}) {
  const existing = storedToken();
  if (existing && !force) return Promise.resolve(existing);
  const dialog = document.getElementById("token-dialog");
  const input = dialog.querySelector("input");
  const note = dialog.querySelector(".dialog-error");
  note.textContent = message;
  input.value = "";
  showDevHint(dialog);
  return new Promise((resolve) => {
    const form = dialog.querySelector("form");
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      localStorage.setItem(TOKEN_KEY, token);
      dialog.close();
      resolve(token);
    };
    dialog.showModal();
    input.focus();
  });
}

// The development token as a hint, only when the server runs in dev mode with it.
function showDevHint(dialog) {
  const hint = dialog.querySelector(".dev-hint");
  if (!hint) return;
  hint.hidden = !CONFIG.devTokenHint;
  if (!CONFIG.devTokenHint) { hint.replaceChildren(); return; }
  const code = document.createElement("code");
  code.textContent = CONFIG.devTokenHint;
  hint.replaceChildren(" Development default: ", code, ".");
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.reason || body.error || body.detail)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }

  get fields() {
    return Array.isArray(this.body.fields) ? this.body.fields : [];
  }
}

export async function call(method, path, { token = null, body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  let payload = null;
  try { payload = await res.json(); } catch { payload = null; }
  if (!res.ok) throw new ApiError(res.status, payload);
  return payload;
}

export function newCommandId() {
  // getRandomValues works outside secure contexts too (randomUUID does not).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
