// One toast per real change. The key is the live message id (plus the entity and its
// version, for changes found by comparing snapshots), so nothing is announced twice.

import { TYPE_LABEL, formatEta, toast } from "./dom.js";

export function unitLabel(unit) {
  return unit ? (unit.callsign || unit.id) : "—";
}

export function announce(detail, state) {
  for (const change of detail.changes) {
    switch (change.kind) {
      case "emergency_new": {
        const e = change.emergency;
        toast(`e:${e.id}:new`, "new", `New emergency · P${e.priority} ${TYPE_LABEL[e.type] || e.type}`,
          e.description || "");
        break;
      }
      case "emergency_status": {
        const e = change.emergency;
        const key = `e:${e.id}:${e.status}`;
        if (e.status === "ASSIGNED") {
          const unit = change.unit || state.units.get(e.assigned_unit_id);
          toast(key, "assigned", `Assigned · ${unitLabel(unit)}`,
            `${TYPE_LABEL[e.type] || e.type} P${e.priority} · ETA ${formatEta(change.dispatch?.eta_s ?? unit?.eta_s)}`);
        } else if (e.status === "ON_SCENE") {
          toast(key, "on_scene", "Unit on scene", `${TYPE_LABEL[e.type] || e.type} P${e.priority}`);
        } else if (e.status === "COMPLETED") {
          toast(key, "completed", "Emergency completed", `${TYPE_LABEL[e.type] || e.type} P${e.priority}`);
        } else if (e.status === "CANCELLED") {
          toast(key, "cancelled", "Emergency cancelled", `${TYPE_LABEL[e.type] || e.type} P${e.priority}`);
        }
        break;
      }
      case "unit_status": {
        const u = change.unit;
        const key = `u:${u.id}:${u.status}:${u.version}`;
        if (u.status === "DISPATCHED") toast(key, "dispatched", `Unit dispatched · ${unitLabel(u)}`, "");
        else if (u.status === "AVAILABLE") toast(key, "available", `Unit available · ${unitLabel(u)}`, "");
        else if (u.status === "OUT_OF_SERVICE") toast(key, "cancelled", `Unit out of service · ${unitLabel(u)}`, "");
        break;
      }
      case "rejected":
        toast(detail.id ? `r:${detail.id}` : null, "error", "Command rejected", change.reason || "");
        break;
      default:
        break;
    }
  }
}
