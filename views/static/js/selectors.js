// What the board shows, read from a LiveState: pure functions of the state (and of the
// emergency asked about), no DOM. board.js draws what they return.

import { haversineM } from "./dom.js";
import {
  EmergencyStatus, FITTING_UNIT_TYPES, UnitStatus, isActive, isClosed, isDispatchable,
} from "./vocabulary.js";

const CLOSED_SHOWN = 8;

function byQueueOrder(a, b) {
  return (a.priority - b.priority) || (Date.parse(a.reported_at) - Date.parse(b.reported_at));
}

// The pending queue: by priority, then age.
export function pendingQueue(state) {
  return [...state.emergencies.values()].filter((e) => e.status === EmergencyStatus.PENDING)
    .sort(byQueueOrder);
}

// Assigned or on scene, in queue order.
export function activeIncidents(state) {
  return [...state.emergencies.values()].filter(isActive).sort(byQueueOrder);
}

// The last few closed (completed or cancelled), newest first.
export function recentlyClosed(state, count = CLOSED_SHOWN) {
  return [...state.emergencies.values()].filter(isClosed)
    .sort((a, b) => Date.parse(b.closed_at || b.reported_at) - Date.parse(a.closed_at || a.reported_at))
    .slice(0, count);
}

// The open incidents in the order j/k move through them.
export function selectionOrder(state) {
  return [...pendingQueue(state), ...activeIncidents(state)];
}

// Every unit, by callsign.
export function unitsByCallsign(state) {
  return [...state.units.values()].sort((x, y) => (x.callsign || x.id).localeCompare(y.callsign || y.id));
}

export const countWith = (units, status) => units.filter((u) => u.status === status).length;
export const availableCount = (units) => countWith(units, UnitStatus.AVAILABLE);

// The unit the worker would most likely pick (straight-line distance; the worker decides
// by travel time on the road network and says so in the dispatch decision), and the rest
// of the fitting available units for an override: [{unit, distance}], nearest first.
export function dispatchCandidates(state, emergency) {
  const fitting = FITTING_UNIT_TYPES[emergency.type] || [];
  return [...state.units.values()]
    .filter((u) => isDispatchable(u) && fitting.includes(u.type))
    .map((u) => ({ unit: u, distance: haversineM(emergency.lat, emergency.lon, u.lat, u.lon) }))
    .sort((a, b) => a.distance - b.distance);
}
