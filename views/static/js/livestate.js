// The state of the live feed, folded from its messages: current emergencies and units,
// the dispatch decisions, the last message id. Knows nothing of transports: live.js (the
// connection) and replayfeed.js (the replay) both feed it through `apply`.
//
// A `snapshot` replaces the state; deltas are applied only when they move an entity's
// `version` forward, and messages whose id was already handled are dropped, so a reconnect
// never duplicates rows or toasts. Each real change is dispatched as a "change" event.

import { isOpen } from "./vocabulary.js";

const ARCHIVED_KEPT = 1000; // archive notices remembered (a page open for days stays small)

export class LiveState extends EventTarget {
  constructor() {
    super();
    this.emergencies = new Map();
    this.units = new Map();
    this.decisions = new Map(); // emergency id -> dispatch decision (why this unit)
    // emergency id -> its emergency_archived data (issue 16): it left the live state
    this.archived = new Map();
    this.loaded = false;
    this.lastId = null;
    this.lastMessageAt = null;
    this.seenIds = new Set();
  }

  // Forget everything (a replay starting over or seeking): the next snapshot is a first
  // load again, and message ids already seen count as new.
  reset() {
    this.emergencies = new Map();
    this.units = new Map();
    this.decisions = new Map();
    this.loaded = false;
    this.lastId = null;
    this.seenIds = new Set();
  }

  // Keep an entity only if it moves its version forward; true if it did.
  static _put(entities, entity) {
    if (!entity || !entity.id) return false;
    const cur = entities.get(entity.id);
    if (cur && (cur.version ?? 0) >= (entity.version ?? 0)) return false;
    entities.set(entity.id, entity);
    return true;
  }

  _putEmergency(e) { return LiveState._put(this.emergencies, e); }

  _putUnit(u) { return LiveState._put(this.units, u); }

  // Replace everything with a full state; report what changed against the old one so a
  // page that reconnects (or polls) still gets one toast per real change.
  _replace(data) {
    const changes = [];
    const oldE = this.emergencies;
    const oldU = this.units;
    this.emergencies = new Map();
    this.units = new Map();
    for (const e of data.emergencies || []) this.emergencies.set(e.id, e);
    for (const u of data.units || []) this.units.set(u.id, u);
    if (this.loaded) {
      for (const [id, e] of this.emergencies) {
        const before = oldE.get(id);
        if (!before) changes.push({ kind: "emergency_new", emergency: e });
        else if (before.status !== e.status) changes.push({ kind: "emergency_status", emergency: e, before });
      }
      for (const [id, u] of this.units) {
        const before = oldU.get(id);
        if (before && before.status !== u.status) changes.push({ kind: "unit_status", unit: u, before });
      }
    }
    this.loaded = true;
    return changes;
  }

  // One unit's new position, if it moves the unit's version forward.
  _move(data, changes) {
    const cur = this.units.get(data.unit_id);
    if (cur && (data.version === undefined || (cur.version ?? 0) < data.version)) {
      const next = { ...cur, lat: data.lat, lon: data.lon, heading: data.heading, eta_s: data.eta_s };
      if (data.route_index !== undefined) next.route_index = data.route_index;
      if (data.version !== undefined) next.version = data.version;
      this.units.set(cur.id, next);
      changes.push({ kind: "unit_moved", unit: next });
    }
  }

  // Apply one message; returns the list of real changes (empty if it was already known).
  apply(event, data, id = null) {
    if (id !== null && id !== undefined && id !== "") {
      if (event !== "snapshot" && this.seenIds.has(id)) return [];
      this.seenIds.add(id);
      if (this.seenIds.size > 5000) this.seenIds.delete(this.seenIds.values().next().value);
      this.lastId = id;
    }
    this.lastMessageAt = Date.now();
    let changes = [];
    switch (event) {
      case "snapshot":
        changes = this._replace(data);
        changes.unshift({ kind: "snapshot" });
        break;
      case "emergency_created": {
        const existed = this.emergencies.has(data.id);
        if (this._putEmergency(data)) {
          changes.push({ kind: existed ? "emergency_changed" : "emergency_new", emergency: data });
        }
        break;
      }
      case "emergency_updated": {
        const before = this.emergencies.get(data.emergency?.id);
        if (data.dispatch && data.emergency) this.decisions.set(data.emergency.id, data.dispatch);
        const unitBefore = data.unit ? this.units.get(data.unit.id) : null;
        if (this._putEmergency(data.emergency)) {
          changes.push({ kind: "emergency_status", action: data.action, emergency: data.emergency,
            unit: data.unit, dispatch: data.dispatch, before });
        }
        if (data.unit && this._putUnit(data.unit) && unitBefore && unitBefore.status !== data.unit.status) {
          changes.push({ kind: "unit_status", unit: data.unit, before: unitBefore });
        }
        break;
      }
      case "unit_status_update": {
        const unit = data.unit || { ...(this.units.get(data.unit_id) || {}), status: data.status };
        const before = this.units.get(unit.id);
        if (this._putUnit(unit) && (!before || before.status !== unit.status)) {
          changes.push({ kind: "unit_status", unit, before });
        }
        break;
      }
      case "unit_location":
        this._move(data, changes);
        break;
      case "unit_locations": { // a frame: each moved unit's latest position (api/conflate.py)
        // columnar (schemas/live.py): the field names once, one array of values per unit
        const fields = data.fields || [];
        for (const row of data.rows || []) {
          const position = {};
          for (let i = 0; i < fields.length; i++) position[fields[i]] = row[i];
          this._move(position, changes);
        }
        break;
      }
      case "command_rejected":
        changes.push({ kind: "rejected", reason: data.reason, data });
        break;
      case "emergency_archived": {
        // Closed a while ago: it moves to history (the log, replay, DuckDB) and leaves the
        // live state, as it left the server's.
        const before = this.emergencies.get(data.emergency_id);
        this.archived.set(data.emergency_id, data);
        if (this.archived.size > ARCHIVED_KEPT) this.archived.delete(this.archived.keys().next().value);
        this.decisions.delete(data.emergency_id);
        if (this.emergencies.delete(data.emergency_id)) {
          changes.push({ kind: "emergency_archived", emergency: before, data });
        }
        break;
      }
      default:
        return [];
    }
    if (changes.length) {
      this.dispatchEvent(new CustomEvent("change", { detail: { event, id, data, changes } }));
    }
    return changes;
  }

  openEmergencies() {
    return [...this.emergencies.values()].filter(isOpen);
  }
}
