// Reporter: send a report, then go to its shareable tracking page.

import { ApiError, call, newCommandId } from "./api.js";
import { $ } from "./dom.js";
import { LiveMap, layerData } from "./map.js";
import { mountPlaceSearch } from "./places.js";

const form = $("#report-form");
const latInput = $("#f-lat");
const lonInput = $("#f-lon");
// One id per report: pressing Send twice (or a retry after a timeout) reports it once.
let commandId = newCommandId();

const map = new LiveMap($("#map"), {
  onClick: ({ lat, lon }) => {
    latInput.value = lat.toFixed(6);
    lonInput.value = lon.toFixed(6);
    showMarker();
  },
});

function showMarker() {
  const lat = Number.parseFloat(latInput.value);
  const lon = Number.parseFloat(lonInput.value);
  // Only a point the map can project (an out-of-range one is for the server to refuse).
  const marker = Math.abs(lat) <= 85 && Math.abs(lon) <= 180 ? { lat, lon } : null;
  map.update(layerData({ marker }));
}
latInput.addEventListener("input", showMarker);
lonInput.addEventListener("input", showMarker);

const places = mountPlaceSearch({
  input: $("#f-street"),
  list: $("#street-results"),
  locate: $("#use-location"),
  status: $("#place-status"),
  onPlace: ({ lat, lon }) => {
    latInput.value = lat.toFixed(6);
    lonInput.value = lon.toFixed(6);
    showMarker();
  },
});

function clearErrors() {
  $("#form-error").hidden = true;
  for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

// The server names fields as paths ("lat", "reporter.phone", "body.lat"); match the most
// specific one this form shows, else put the reason at the top.
function showFieldError(field, reason) {
  const parts = String(field || "").split(".").filter((p) => p !== "body");
  for (let i = 0; i < parts.length; i += 1) {
    const name = parts.slice(i).join(".");
    const node = form.querySelector(`.field-error[data-field="${CSS.escape(name)}"]`);
    if (node) {
      node.textContent = reason;
      const input = form.querySelector(`[name="${CSS.escape(parts[parts.length - 1])}"]`);
      input?.setAttribute("aria-invalid", "true");
      return true;
    }
  }
  return false;
}

function showError(message, fields = []) {
  const unplaced = [];
  for (const { field, reason } of fields) if (!showFieldError(field, reason)) unplaced.push(`${field}: ${reason}`);
  const top = $("#form-error");
  top.textContent = [message, ...unplaced].filter(Boolean).join(" · ");
  top.hidden = false;
  form.querySelector("[aria-invalid]")?.focus();
}

function number(value) {
  const text = String(value).trim();
  return text === "" ? null : Number(text);
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors();
  const data = new FormData(form);
  const body = {
    command_id: commandId,
    type: data.get("type"),
    priority: Number.parseInt(data.get("priority"), 10),
    lat: number(data.get("lat")),
    lon: number(data.get("lon")),
    description: String(data.get("description") || "").trim(),
  };
  const name = String(data.get("name") || "").trim();
  const phone = String(data.get("phone") || "").trim();
  if (name || phone) body.reporter = { name: name || null, phone: phone || null };
  const button = $("#submit-report");
  button.disabled = true;
  button.textContent = "Sending…";
  try {
    const created = await call("POST", "/api/emergencies", { body });
    const id = created?.id || created?.emergency_id || created?.emergency?.id;
    if (!id) throw new Error("the server did not say which emergency it created");
    location.assign(`/track/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
      // A rejected report was not recorded: the next attempt is a new command.
      commandId = newCommandId();
      showError(err.body.error || "Please check the report.", err.fields);
    } else {
      showError(`Could not send the report (${err.message}). Your report is kept here; try again.`);
    }
    button.disabled = false;
    button.textContent = "Send report";
  }
});

window.dispatchwire = { map, places };
