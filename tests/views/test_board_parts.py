"""The board's parts on their own, in real Chromium (issue 13 item 4): the pure selectors
(``static/js/selectors.js``) answer from a plain state object, no DOM and no connection;
the renderers (``static/js/board.js``) draw into the nodes they are given, not into the
page's own; the live state's fold (``livestate.js``) works without any transport.

The modules are loaded from the real page routes under uvicorn (``ClosingSite``, no Kafka),
into a blank page of that origin.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dispatchwire.settings import Settings
from tests.views.closing_site import ClosingSite

pytestmark = pytest.mark.browser

STATE = """
const at = (m) => new Date(Date.UTC(2026, 10, 29, 8, m)).toISOString();
const e = (id, status, priority, m, extra = {}) => ({ id, status, priority, reported_at: at(m),
  type: "medical", region: "hki-nw", lat: 60.17, lon: 24.94, description: id, ...extra });
const u = (id, type, status, lat, extra = {}) => ({ id, callsign: id.toUpperCase(), type, status,
  lat, lon: 24.94, ...extra });
const state = {
  emergencies: new Map([
    e("late-p1", "PENDING", 1, 30), e("early-p3", "PENDING", 3, 10), e("early-p1", "PENDING", 1, 5),
    e("on-scene", "ON_SCENE", 2, 1, { assigned_unit_id: "a2" }), e("assigned", "ASSIGNED", 1, 2),
    ...Array.from({ length: 10 }, (_, i) => e(`done-${i}`, i % 2 ? "COMPLETED" : "CANCELLED", 3, i,
      { closed_at: at(20 + i) })),
  ].map((x) => [x.id, x])),
  units: new Map([
    u("a-far", "ambulance", "AVAILABLE", 60.30), u("a-near", "ambulance", "RETURNING", 60.18),
    u("a-busy", "ambulance", "DISPATCHED", 60.17), u("a-off", "ambulance", "OUT_OF_SERVICE", 60.17),
    u("f1", "fire_engine", "AVAILABLE", 60.17),
    u("a2", "ambulance", "ON_SCENE", 60.17, { emergency_id: "on-scene" }),
  ].map((x) => [x.id, x])),
  decisions: new Map(),
};
"""


@pytest.fixture
def blank(new_context) -> Iterator[object]:
    site = ClosingSite(Settings()).start()
    page = new_context().new_page()
    # A page of the site's origin that runs none of the pages' scripts.
    page.goto(site.base_url + "/views/config.js")
    yield page
    site.stop()


def test_the_selectors_answer_from_a_plain_state(blank) -> None:
    result = blank.evaluate(
        "async () => {"
        + STATE
        + """
      const s = await import("/static/js/selectors.js");
      const ids = (xs) => xs.map((x) => x.id);
      const medical = state.emergencies.get("early-p1");
      return {
        pending: ids(s.pendingQueue(state)),
        active: ids(s.activeIncidents(state)),
        closed: ids(s.recentlyClosed(state)),
        order: ids(s.selectionOrder(state)),
        units: ids(s.unitsByCallsign(state)),
        available: s.availableCount([...state.units.values()]),
        candidates: s.dispatchCandidates(state, medical).map((c) => c.unit.id),
        fire: s.dispatchCandidates(state, { ...medical, type: "fire" }).map((c) => c.unit.id),
      };
    }"""
    )
    assert result["pending"] == ["early-p1", "late-p1", "early-p3"]
    assert result["active"] == ["assigned", "on-scene"]
    assert result["closed"] == [f"done-{i}" for i in range(9, 1, -1)]
    assert result["order"] == result["pending"] + result["active"]
    assert sorted(result["units"]) == ["a-busy", "a-far", "a-near", "a-off", "a2", "f1"]
    assert result["units"][-1] == "f1"  # by callsign: F1 after the A...
    assert result["available"] == 2
    # Fitting, dispatchable (AVAILABLE or RETURNING), nearest first.
    assert result["candidates"] == ["a-near", "a-far"]
    assert result["fire"] == ["f1"]


def test_the_renderers_draw_into_the_nodes_they_are_given(blank) -> None:
    result = blank.evaluate(
        "async () => {"
        + STATE
        + """
      const b = await import("/static/js/board.js");
      const s = await import("/static/js/selectors.js");
      const selected = [];
      const busy = new Set(["early-p1"]);
      const commands = { busy, dispatch() {}, complete() {}, cancel() {} };
      const view = { state, commands, now: () => Date.parse(at(40)), selectedId: "on-scene",
        select: (id) => selected.push(id) };
      const list = document.createElement("ol");
      list.dataset.empty = "nothing";
      b.renderIncidentList(list, s.pendingQueue(state), view);
      const empty = document.createElement("ol");
      empty.dataset.empty = "nothing here";
      b.renderIncidentList(empty, [], view);
      const active = document.createElement("ol");
      b.renderIncidentList(active, s.activeIncidents(state), view);
      const rows = document.createElement("tbody");
      b.renderUnitRows(rows, s.unitsByCallsign(state), view);
      rows.querySelector('tr[data-unit="a2"] a').click();
      const plain = document.createElement("tbody");
      b.renderUnitRows(plain, s.unitsByCallsign(state), { state }, { position: true });
      const panel = document.createElement("section");
      b.renderDetails(panel, state.emergencies.get("early-p3"), view);
      const none = document.createElement("section");
      b.renderDetails(none, null, view);
      return {
        pending: [...list.children].map((li) => li.dataset.id),
        busy: [...list.querySelectorAll('[data-id="early-p1"] button')].map((x) => x.disabled),
        actions: [...list.children[0].querySelectorAll("button")].map((x) => x.dataset.action),
        activeActions: [...active.children[0].querySelectorAll("button")]
          .map((x) => x.dataset.action),
        selectedRow: active.querySelector(".selected")?.dataset.id,
        empty: empty.textContent,
        rows: rows.children.length,
        selected,
        plainCells: plain.querySelector('tr[data-unit="a2"]').children.length,
        plainLinks: plain.querySelectorAll("a").length,
        details: panel.hidden, recommended: panel.querySelector(".recommendation")?.dataset.unit,
        noneHidden: none.hidden,
        pageUntouched: !document.querySelector(".incident, [data-unit]"),
      };
    }"""
    )
    assert result["pending"] == ["early-p1", "late-p1", "early-p3"]
    assert result["busy"] == [True, True] and result["actions"] == ["dispatch", "cancel"]
    assert result["activeActions"] == ["complete", "cancel"]
    assert result["selectedRow"] == "on-scene"
    assert result["empty"] == "nothing here"
    assert result["rows"] == 6 and result["selected"] == ["on-scene"]
    assert result["plainCells"] == 6 and result["plainLinks"] == 0
    assert result["details"] is False and result["recommended"] == "a-near"
    assert result["noneHidden"] is True
    assert result["pageUntouched"]


def test_the_fold_needs_no_transport(blank) -> None:
    result = blank.evaluate("""async () => {
      const { LiveState } = await import("/static/js/livestate.js");
      const state = new LiveState();
      const kinds = [];
      state.addEventListener("change", (ev) => kinds.push(...ev.detail.changes.map((c) => c.kind)));
      const unit = { id: "a1", type: "ambulance", status: "AVAILABLE", version: 1 };
      const moved = { ...unit, status: "DISPATCHED", version: 2 };
      state.apply("snapshot", { emergencies: [], units: [unit] }, "p1");
      state.apply("unit_status_update", { unit: moved }, "p2");
      state.apply("unit_status_update", { unit: moved }, "p2");  // seen: dropped
      return { kinds, status: state.units.get("a1").status, lastId: state.lastId };
    }""")
    assert result == {"kinds": ["snapshot", "unit_status"], "status": "DISPATCHED", "lastId": "p2"}
