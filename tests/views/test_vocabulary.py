"""The domain's words reach the pages from ``schemas``, never from a copy in JS (issue 13
item 4): ``/views/config.js`` serves ``schemas.live.vocabulary_json`` (statuses, types,
FITTING_UNIT_TYPES, event names) and the type labels; ``static/js/vocabulary.js`` is the only
module that reads them, and no other module spells a status or a type. Without a browser."""

from __future__ import annotations

import re
from pathlib import Path

from dispatchwire.settings import Settings
from schemas.entities import (
    FITTING_UNIT_TYPES,
    EmergencyStatus,
    EmergencyType,
    UnitStatus,
    UnitType,
)
from schemas.events import EVENT_NAMES
from tests.views.test_page_config import served_config

JS = Path(__file__).resolve().parents[2] / "views" / "static" / "js"


def test_the_served_vocabulary_is_the_one_in_schemas() -> None:
    words = served_config(Settings())["vocabulary"]
    assert words["emergencyStatuses"] == [s.value for s in EmergencyStatus]
    assert words["unitStatuses"] == [s.value for s in UnitStatus]
    assert words["emergencyTypes"] == [t.value for t in EmergencyType]
    assert words["unitTypes"] == [t.value for t in UnitType]
    assert words["fittingUnitTypes"] == {
        e.value: [u.value for u in units] for e, units in FITTING_UNIT_TYPES.items()
    }
    assert words["events"] == list(EVENT_NAMES)
    assert words["openEmergencyStatuses"] == [s.value for s in EmergencyStatus if s.is_open]
    assert words["dispatchableUnitStatuses"] == [s.value for s in UnitStatus if s.dispatchable]
    assert words["movingUnitStatuses"] == [s.value for s in UnitStatus if s.moving]
    # Every type a page may show has its label.
    assert set(words["typeLabels"]) == {t.value for t in (*EmergencyType, *UnitType)}


def _literals(words: set[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(JS.glob("*.js")):
        if path.name == "vocabulary.js":
            continue
        for match in re.finditer(r"""["'`]([A-Za-z_]+)["'`]""", path.read_text(encoding="utf-8")):
            if match.group(1) in words:
                found.setdefault(path.name, []).append(match.group(1))
    return found


def test_no_page_module_spells_a_status_or_a_type() -> None:
    words = {s.value for s in (*EmergencyStatus, *UnitStatus, *EmergencyType, *UnitType)}
    assert _literals(words) == {}


def test_event_names_are_spelled_only_by_the_fold() -> None:
    # The fold of the live state decides per event; every other module takes the names
    # from vocabulary.js.
    assert set(_literals(set(EVENT_NAMES))) <= {"livestate.js"}
