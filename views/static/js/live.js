// The one live connection every page shares, the transport: current state, then deltas,
// gap-free, handed to a LiveState (livestate.js, the fold) message by message.
//
// Transports, in order: SSE `/api/stream`; if it cannot be opened, the WebSocket `/ws`
// (frames {"event","id","data"}); if that fails too, REST polling of `/api/state`.
// Every message id is remembered by the state; a manual reconnect passes `?last_event_id=`
// (EventSource sends Last-Event-ID by itself on its own reconnects), so the server resumes
// right after it, or sends a fresh `snapshot`.

import { CONFIG } from "/views/config.js";
import { LIVE_EVENTS } from "./vocabulary.js";

// ---------------------------------------------------------------- close codes

// What the server means by a WebSocket close code, and what to do about it: the one table
// in schemas/live.py, served as /views/config.js. A code it does not name (1006 for a
// connection that failed, 1008, 1011...) is a failed connection: retry, then fall back.
function closeRule(code) {
  const rule = CONFIG.closeCodes[String(code)];
  return rule ? { code, ...rule } : null;
}

const BACKOFF_FIRST_MS = 5000;
const BACKOFF_MAX_MS = 60000;

// ---------------------------------------------------------------- connection

function withQuery(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  return url;
}

/**
 * Keep `state` current. Options:
 *   token      bearer token (query `token=` for SSE/WS, Authorization header for REST)
 *   streamUrl  the SSE stream (default /api/stream)
 *   wsUrl      the WebSocket fallback (default /ws); null: from SSE straight to polling
 *   onGone     called with the body of a 410 from pollUrl (what it polls moved away)
 *   pollUrl    REST fallback returning {emergencies, units} (default /api/state)
 *   toState    maps the REST body to {emergencies, units}
 *   onStatus   called with {transport, phase, detail} on every transport change
 */
export function connectLive(state, options = {}) {
  const opts = {
    streamUrl: "/api/stream",
    wsUrl: "/ws",
    pollUrl: "/api/state",
    pollMs: 2000,
    toState: (body) => body,
    onStatus: () => {},
    onUnauthorized: () => {},
    sseOpenTimeoutMs: 6000,
    start: "sse", // or "poll": for pages whose readers may not open the stream
    ...options,
  };
  let es = null;
  let ws = null;
  let pollTimer = null;
  let watchdog = null;
  let retryTimer = null;
  let stopped = false;
  let wsFailures = 0;
  let backoffMs = 0;
  const status = { transport: "none", phase: "connecting", detail: "" };

  const setStatus = (transport, phase, detail = "") => {
    Object.assign(status, { transport, phase, detail });
    opts.onStatus({ ...status });
  };

  const handle = (event, data, id) => state.apply(event, data, id);

  function closeAll() {
    clearTimeout(watchdog);
    clearTimeout(retryTimer);
    clearInterval(pollTimer);
    pollTimer = null;
    if (es) { es.close(); es = null; }
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
  }

  // --- SSE
  function startSSE(resume) {
    closeAll();
    setStatus("sse", "connecting");
    const url = withQuery(opts.streamUrl, { token: opts.token, last_event_id: resume ? state.lastId : null });
    let opened = false;
    let errors = 0;
    es = new EventSource(url);
    for (const name of LIVE_EVENTS) {
      es.addEventListener(name, (msg) => {
        let data;
        try { data = JSON.parse(msg.data); } catch { return; }
        handle(name, data, msg.lastEventId || null);
      });
    }
    es.addEventListener("error", () => {
      errors += 1;
      // Never opened, or refused for good (HTTP error: readyState CLOSED): fall back.
      if (!es || es.readyState === EventSource.CLOSED || (!opened && errors >= 2) || errors >= 4) {
        afterSSE();
      } else {
        setStatus("sse", "reconnecting");
      }
    });
    es.addEventListener("open", () => {
      opened = true;
      errors = 0;
      clearTimeout(watchdog);
      setStatus("sse", "live");
    });
    watchdog = setTimeout(() => { if (!opened) afterSSE(); }, opts.sseOpenTimeoutMs);
  }

  function afterSSE() {
    if (opts.wsUrl) startWS();
    else startPolling();
  }

  // --- WebSocket
  function startWS() {
    closeAll();
    setStatus("ws", "connecting");
    // The token goes in the first frame, not the URL (URLs end up in logs).
    const url = withQuery(opts.wsUrl, {});
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    let opened = false;
    try {
      ws = new WebSocket(url);
    } catch {
      startPolling();
      return;
    }
    ws.onopen = () => {
      opened = true;
      wsFailures = 0;
      // The server waits briefly for a hello naming where to resume; say it at once.
      ws.send(JSON.stringify({ token: opts.token || null, last_event_id: state.lastId }));
      setStatus("ws", "live");
    };
    ws.onmessage = (msg) => {
      let frame;
      try { frame = JSON.parse(msg.data); } catch { return; }
      if (frame && frame.event) handle(frame.event, frame.data, frame.id ?? null);
    };
    ws.onclose = (ev) => {
      ws = null;
      if (stopped) return;
      const rule = closeRule(ev.code);
      if (rule) { onServerClose(rule); return; }
      if (!opened) wsFailures += 1;
      if (wsFailures >= 2) { startPolling(); return; }
      setStatus("ws", "reconnecting");
      retryTimer = setTimeout(startWS, opened ? 500 : 1500);
    };
  }

  // The server closed the socket and said why (schemas/live.py): act on its action.
  function onServerClose({ action, reason }) {
    if (action !== "backoff") backoffMs = 0;
    switch (action) {
      case "login": // the page asks for a token and starts a new connection with it
        setStatus("ws", "unauthorized", reason);
        opts.onUnauthorized(reason);
        return;
      case "backoff":
        backoffMs = Math.min(BACKOFF_MAX_MS, backoffMs ? backoffMs * 2 : BACKOFF_FIRST_MS);
        setStatus("ws", "backoff", reason);
        retryTimer = setTimeout(startWS, backoffMs);
        return;
      case "stop": // reconnecting the same way cannot help; a reload or new token may
        setStatus("ws", "stopped", reason);
        return;
      default: // "reconnect": resume after the last id seen
        setStatus("ws", "reconnecting", reason);
        retryTimer = setTimeout(startWS, 500);
    }
  }

  // --- REST polling, the last resort; now and then it tries the stream again.
  function startPolling() {
    closeAll();
    setStatus("poll", "connecting");
    let polls = 0;
    const poll = async () => {
      polls += 1;
      if (opts.start !== "poll" && polls % 15 === 0) { wsFailures = 0; startSSE(true); return; }
      try {
        const headers = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
        const res = await fetch(opts.pollUrl, { headers, cache: "no-store" });
        if (res.status === 401 || res.status === 403) { opts.onUnauthorized(); }
        if (res.status === 410 && opts.onGone) { opts.onGone(await res.json()); return; }
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const body = await res.json();
        if (stopped || !pollTimer) return;
        handle("snapshot", opts.toState(body), null);
        setStatus("poll", "live");
      } catch (err) {
        if (!stopped) setStatus("poll", "offline", String(err.message || err));
      }
    };
    pollTimer = setInterval(poll, opts.pollMs);
    poll();
  }

  if (opts.start === "poll") startPolling();
  else startSSE(false);
  return {
    status: () => ({ ...status }),
    reconnect: () => { if (!stopped) startSSE(true); },
    close: () => { stopped = true; closeAll(); setStatus("none", "closed"); },
  };
}

// ---------------------------------------------------------------- indicator

const TRANSPORT_LABEL = { sse: "SSE", ws: "WebSocket", poll: "Polling", none: "—" };

// A small badge: which transport carries the data and how old the last message is.
export function mountIndicator(node, state) {
  let current = { transport: "none", phase: "connecting" };
  const render = () => {
    const age = state.lastMessageAt ? Math.round((Date.now() - state.lastMessageAt) / 1000) : null;
    node.dataset.transport = current.transport;
    node.dataset.phase = current.phase;
    node.textContent = "";
    const dot = document.createElement("span");
    dot.className = "dot";
    const label = document.createElement("span");
    label.className = "transport";
    label.textContent = `${TRANSPORT_LABEL[current.transport] || current.transport} · ${current.phase}`;
    const fresh = document.createElement("span");
    fresh.className = "freshness";
    fresh.textContent = age === null ? "no data yet" : `last update ${age < 1 ? "now" : `${age}s ago`}`;
    node.append(dot, label, fresh);
    node.title = current.detail || "";
  };
  setInterval(render, 1000);
  render();
  return (status) => { current = status; render(); };
}
