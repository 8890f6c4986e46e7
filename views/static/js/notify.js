// One toast per real change. The key is the live message id (plus the entity and its
// version, for changes found by comparing snapshots), so nothing is announced twice.
// A rejected command toasts only on the page that sent it (`ownCommand(command_id)`);
// everyone else's rejections (other dispatchers, the simulator) go to the quiet activity
// list.

import { formatEta, logActivity, toast } from "./dom.js";
import { EmergencyStatus, UnitStatus, typeLabel } from "./vocabulary.js";

export function unitLabel(unit) {
  return unit ? (unit.callsign || unit.id) : "—";
}

// The toast of a rejected command; the page that sent it may also learn of it from the
// HTTP answer (409): both use this key, so it is shown once.
export function rejectionToast(commandId, reason) {
  toast(commandId ? `r:${commandId}` : null, "error", "Command rejected", reason || "");
}

export function announce(detail, state, { ownCommand = () => false } = {}) {
  for (const change of detail.changes) {
    switch (change.kind) {
      case "emergency_new": {
        const e = change.emergency;
        toast(`e:${e.id}:new`, "new", `New emergency · P${e.priority} ${typeLabel(e.type)}`,
          e.description || "");
        break;
      }
      case "emergency_status": {
        const e = change.emergency;
        const key = `e:${e.id}:${e.status}`;
        if (e.status === EmergencyStatus.ASSIGNED) {
          const unit = change.unit || state.units.get(e.assigned_unit_id);
          toast(key, "assigned", `Assigned · ${unitLabel(unit)}`,
            `${typeLabel(e.type)} P${e.priority} · ETA ${formatEta(change.dispatch?.eta_s ?? unit?.eta_s)}`);
        } else if (e.status === EmergencyStatus.ON_SCENE) {
          toast(key, "on_scene", "Unit on scene", `${typeLabel(e.type)} P${e.priority}`);
        } else if (e.status === EmergencyStatus.COMPLETED) {
          toast(key, "completed", "Emergency completed", `${typeLabel(e.type)} P${e.priority}`);
        } else if (e.status === EmergencyStatus.CANCELLED) {
          toast(key, "cancelled", "Emergency cancelled", `${typeLabel(e.type)} P${e.priority}`);
        }
        break;
      }
      case "unit_status": {
        const u = change.unit;
        const key = `u:${u.id}:${u.status}:${u.version}`;
        if (u.status === UnitStatus.DISPATCHED) toast(key, "dispatched", `Unit dispatched · ${unitLabel(u)}`, "");
        else if (u.status === UnitStatus.AVAILABLE) toast(key, "available", `Unit available · ${unitLabel(u)}`, "");
        else if (u.status === UnitStatus.OUT_OF_SERVICE) toast(key, "cancelled", `Unit out of service · ${unitLabel(u)}`, "");
        break;
      }
      case "rejected":
        if (ownCommand(change.data?.command_id)) rejectionToast(change.data.command_id, change.reason);
        else logActivity("rejected", "Command rejected", change.reason || "");
        break;
      default:
        break;
    }
  }
}
