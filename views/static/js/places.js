// Finding the place of a report without knowing coordinates: search the street names of
// the demo area (/views/streets.json, built from the router's OpenStreetMap extract by
// views/streets.py; searched here, offline), or share the browser's location (the
// Geolocation API, which asks the person first).

import { h } from "./dom.js";

const MAX_RESULTS = 8;

// Lower case, accents off: "toolonkatu" finds "Töölönkatu".
function fold(text) {
  return String(text).normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase().trim();
}

// Streets whose name starts with the query first, then those containing it.
function searchStreets(streets, query, limit = MAX_RESULTS) {
  const q = fold(query);
  if (!q) return [];
  const starts = [];
  const contains = [];
  for (const s of streets) {
    const name = s.folded ?? fold(s.name);
    if (name.startsWith(q)) starts.push(s);
    else if (name.includes(q)) contains.push(s);
  }
  return [...starts, ...contains].slice(0, limit);
}

/**
 * Wire the search box, its result list, the "use my location" button and the status line.
 * `onPlace({lat, lon, label})` is called with the chosen place.
 */
export function mountPlaceSearch({ input, list, locate, status, onPlace }) {
  let streets = [];
  let shown = [];
  const ready = fetch("/views/streets.json")
    .then((res) => { if (!res.ok) throw new Error(`HTTP ${res.status}`); return res.json(); })
    .then((index) => {
      streets = index.streets.map((s) => ({ ...s, folded: fold(s.name) }));
      input.dataset.streets = String(streets.length);
    })
    .catch((err) => { status.textContent = `Street search unavailable (${err.message}).`; });

  function close() {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
  }

  function choose(street) {
    input.value = street.name;
    close();
    status.textContent = `Location set to ${street.name}. Adjust it on the map if needed.`;
    onPlace({ lat: street.lat, lon: street.lon, label: street.name });
  }

  function render() {
    shown = searchStreets(streets, input.value);
    list.replaceChildren(...shown.map((s, i) => h("li", { role: "option", id: `street-${i}` },
      h("button", { type: "button", "data-street": s.name, onclick: () => choose(s) }, s.name))));
    if (input.value.trim() && !shown.length) {
      list.append(h("li", { class: "none" }, "No street of that name in the service area"));
    }
    list.hidden = !input.value.trim();
    input.setAttribute("aria-expanded", String(!list.hidden));
  }

  input.addEventListener("input", () => { ready.then(render); });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault(); // never submits the report
      if (shown.length) choose(shown[0]);
    } else if (ev.key === "ArrowDown" && shown.length) {
      ev.preventDefault();
      list.querySelector("button")?.focus();
    } else if (ev.key === "Escape") close();
  });
  list.addEventListener("keydown", (ev) => {
    const items = [...list.querySelectorAll("button")];
    const at = items.indexOf(document.activeElement);
    if (ev.key === "ArrowDown" && at >= 0) { ev.preventDefault(); items[Math.min(items.length - 1, at + 1)].focus(); }
    else if (ev.key === "ArrowUp" && at >= 0) { ev.preventDefault(); (at === 0 ? input : items[at - 1]).focus(); }
    else if (ev.key === "Escape") { close(); input.focus(); }
  });

  locate.addEventListener("click", () => {
    if (!navigator.geolocation) {
      status.textContent = "This browser cannot share its location: search a street or click the map.";
      return;
    }
    status.textContent = "Asking for your location…";
    locate.disabled = true;
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        locate.disabled = false;
        const { latitude: lat, longitude: lon, accuracy } = pos.coords;
        status.textContent = `Location set to where you are (within about ${Math.round(accuracy)} m).`;
        onPlace({ lat, lon, label: "your location" });
      },
      (err) => {
        locate.disabled = false;
        status.textContent = err.code === err.PERMISSION_DENIED
          ? "Location not shared: search a street or click the map instead."
          : `Could not get your location (${err.message}): search a street or click the map.`;
      },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
    );
  });

  return { ready };
}
