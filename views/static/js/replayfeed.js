// The replay stream (/api/replay/stream) feeding a LiveState: start, pause, resume, seek,
// speed. One EventSource at a time and no fallback transport (a replay is no live feed):
// a stream that breaks stops as if paused, and play resumes it where it stopped.
//
// Where it is. Every id is a log position (position.js, "12.0.40": the next offset per
// partition): the first snapshot's is the window's start and its `replay.to` the window's
// end; a message's is the position after it. So the last id is where the replay stands,
// and resuming asks for from_position=<that>&to_position=<the end>: the server sends a
// snapshot of the state there, then exactly the rest. EventSource's own reconnect is never
// used: it would start the window over.
//
// When it is. The stream is opened with clock=1 and its `replay_clock` messages carry the
// record time; between two of them the time runs on at the speed (never backwards).

import { formatPosition, parsePosition } from "./position.js";
import { LIVE_EVENTS } from "./vocabulary.js";

const SPEEDS = { 1: 1, 10: 10, 60: 60, max: null };

// Phases: idle, connecting, playing, paused, ended, error. A "status" event follows
// every change of phase; "unauthorized" when the server refuses the token.
export class ReplayFeed extends EventTarget {
  constructor(state, { token = "", url = "/api/replay/stream" } = {}) {
    super();
    this.state = state;
    this.token = token;
    this.url = url;
    this.phase = "idle";
    this.detail = "";
    this.fromMs = null;
    this.toMs = null;
    this.speed = "60";
    this.position = null; // next offset per partition (parsePosition), after the last message
    this.stop = null; // the window's end position, from the first snapshot
    this.received = 0; // live messages applied since the start (or the last seek)
    this.windowEvents = null; // how many the window holds, from the start's snapshot
    this.source = null;
    this._clockMs = null;
    this._clockWall = 0;
    this._clocked = false; // a replay_clock came on this connection: the time may run on
    this._shown = null;
  }

  get connected() { return this.source !== null; }

  // A new replay of [fromMs, toMs): the state starts from nothing.
  start({ fromMs, toMs, speed = this.speed }) {
    Object.assign(this, { fromMs, toMs, speed, position: null, stop: null, received: 0, windowEvents: null });
    this.state.reset();
    this._open({ from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString() }, fromMs);
  }

  pause() {
    if (!this.source) return;
    this._clockMs = this.time();
    this._close();
    this._setPhase("paused");
  }

  // On from where it stopped (the position), at the current speed.
  resume() {
    if (this.position && this.stop) {
      this._open({ from_position: formatPosition(this.position), to_position: this.stop }, this.time());
    } else if (this.fromMs !== null) {
      this.start({ fromMs: this.fromMs, toMs: this.toMs });
    }
  }

  // Jump to a time of the window: the server folds the state up to it. Playing goes on
  // playing from there; otherwise the board shows that moment and stays paused.
  seek(ms) {
    if (this.fromMs === null) return;
    const at = Math.max(this.fromMs, Math.min(this.toMs, ms));
    const playing = this.phase === "playing" || this.phase === "connecting";
    const end = this.stop ? { to_position: this.stop } : { to: new Date(this.toMs).toISOString() };
    this.received = 0;
    this.windowEvents = null;
    this.state.reset();
    const from = new Date(at).toISOString();
    if (playing || !this.stop) this._open({ from, ...end }, at);
    else this._open({ from, to: new Date(at + 1).toISOString() }, at, { peek: true });
  }

  setSpeed(speed) {
    this.speed = speed;
    if (this.source) { this.pause(); this.resume(); }
  }

  // The replay's current time (ms): the last clock, run on at the speed while playing.
  time() {
    if (this._clockMs === null) return this.fromMs ?? Date.now();
    let t = this._clockMs;
    const rate = SPEEDS[this.speed];
    if (this.phase === "playing" && rate && this._clocked) {
      t += (performance.now() - this._clockWall) * rate;
    }
    if (this.toMs !== null) t = Math.min(t, this.toMs);
    this._shown = this._shown === null ? t : Math.max(this._shown, t);
    return this._shown;
  }

  // ---------------------------------------------------------------- connection

  _setPhase(phase, detail = "") {
    this.phase = phase;
    this.detail = detail;
    this.dispatchEvent(new CustomEvent("status", { detail: { phase, detail } }));
  }

  _close() {
    if (this.source) { this.source.close(); this.source = null; }
  }

  _url(params) {
    const url = new URL(this.url, location.origin);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    url.searchParams.set("speed", this.speed);
    url.searchParams.set("clock", "1");
    if (this.token) url.searchParams.set("token", this.token);
    return url;
  }

  _open(params, clockMs, { peek = false } = {}) {
    this._close();
    this._clockMs = clockMs;
    this._clocked = false;
    this._shown = null;
    const url = this._url(params);
    const es = new EventSource(url);
    this.source = es;
    this._setPhase("connecting");
    const mine = (fn) => (msg) => { if (this.source === es) fn(msg); };
    const parse = (msg) => { try { return JSON.parse(msg.data); } catch { return null; } };
    let answered = false;

    es.addEventListener("snapshot", mine((msg) => {
      const data = parse(msg);
      if (!data) return;
      answered = true;
      this.position = parsePosition(msg.lastEventId || data.position);
      if (!this.stop) this.stop = data.replay?.to ?? null;
      if (this.windowEvents === null && !peek) this.windowEvents = this.received + (data.replay?.events ?? 0);
      this.state.apply("snapshot", data, msg.lastEventId || null);
      if (!peek) this._setPhase("playing");
    }));
    for (const name of LIVE_EVENTS) {
      if (name === "snapshot") continue;
      es.addEventListener(name, mine((msg) => {
        const data = parse(msg);
        if (!data) return;
        const after = parsePosition(msg.lastEventId);
        if (after) this.position = after;
        this.received += 1;
        this.state.apply(name, data, msg.lastEventId || null);
      }));
    }
    es.addEventListener("replay_clock", mine((msg) => {
      const data = parse(msg);
      if (!data || !Number.isFinite(data.time_ms)) return;
      this._clockMs = data.time_ms;
      this._clockWall = performance.now();
      this._clocked = true;
    }));
    es.addEventListener("replay_end", mine((msg) => {
      const data = parse(msg) || {};
      this._close();
      if (data.position) this.position = parsePosition(data.position) ?? this.position;
      if (peek) { this._setPhase("paused"); return; }
      this._clockMs = this.toMs ?? this._clockMs;
      this._setPhase("ended");
    }));
    es.addEventListener("error", mine(() => {
      this._close();
      if (answered) {
        this._clockMs = this.time();
        this._setPhase("paused", "the stream broke off; play resumes where it stopped");
      } else {
        this._explain(url);
      }
    }));
  }

  // EventSource hides why a stream was refused; ask once more with fetch to find out
  // (a 400 names the field, a 401 wants the token). A stream that does answer is dropped.
  async _explain(url) {
    const abort = new AbortController();
    try {
      const res = await fetch(url, { signal: abort.signal, cache: "no-store", headers: { Accept: "application/json" } });
      if (res.ok) {
        abort.abort();
        this._setPhase("error", "the replay stream broke off while opening; try play again");
        return;
      }
      let body = null;
      try { body = await res.json(); } catch { body = null; }
      const fields = Array.isArray(body?.fields) ? body.fields.map((f) => `${f.field}: ${f.reason}`).join("; ") : "";
      this._setPhase("error", fields || body?.error || `HTTP ${res.status}`);
      if (res.status === 401 || res.status === 403) this.dispatchEvent(new Event("unauthorized"));
    } catch (err) {
      this._setPhase("error", `the server cannot be reached (${err.message || err})`);
    }
  }
}
