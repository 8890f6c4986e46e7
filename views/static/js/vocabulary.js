// The domain's words, as the server serves them (/views/config.js, from schemas.live and
// views.config.TYPE_LABELS): the pages never carry their own copy of a Python table.
//
// EmergencyStatus and UnitStatus name each status (`EmergencyStatus.PENDING`); asking for
// a status the server does not know throws, so a typo fails at once instead of matching
// nothing.

import { CONFIG } from "/views/config.js";

const WORDS = CONFIG.vocabulary;

function names(values, what) {
  const table = Object.freeze(Object.fromEntries(values.map((v) => [v, v])));
  return new Proxy(table, {
    get(target, key) {
      if (typeof key === "string" && !(key in target)) throw new Error(`no ${what} ${key}`);
      return target[key];
    },
  });
}

export const EmergencyStatus = names(WORDS.emergencyStatuses, "emergency status");
export const UnitStatus = names(WORDS.unitStatuses, "unit status");

export const OPEN_STATUSES = Object.freeze([...WORDS.openEmergencyStatuses]);
const CLOSED_STATUSES = Object.freeze(
  WORDS.emergencyStatuses.filter((s) => !OPEN_STATUSES.includes(s)));
const DISPATCHABLE_STATUSES = Object.freeze([...WORDS.dispatchableUnitStatuses]);

export const isOpen = (emergency) => OPEN_STATUSES.includes(emergency.status);
export const isClosed = (emergency) => CLOSED_STATUSES.includes(emergency.status);
// Open and past PENDING: a unit is assigned or on scene.
export const isActive = (emergency) => isOpen(emergency) && emergency.status !== EmergencyStatus.PENDING;
export const isDispatchable = (unit) => DISPATCHABLE_STATUSES.includes(unit.status);

// Which unit types may answer which emergency (schemas.entities.FITTING_UNIT_TYPES).
export const FITTING_UNIT_TYPES = WORDS.fittingUnitTypes;

// The events of the log, "snapshot", which the live feed sends first, and the feed's
// frames (conflated unit positions).
export const LIVE_EVENTS = Object.freeze(["snapshot", ...WORDS.events, ...WORDS.frameEvents]);

export const typeLabel = (type) => WORDS.typeLabels[type] || type;
