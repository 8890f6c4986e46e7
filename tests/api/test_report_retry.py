"""Issue 10, item 1: every answer to a report, and to each retry of it, names the emergency
the worker really creates (the worker keeps the first copy of a command id)."""

from __future__ import annotations

import pytest

from schemas.commands import ReportEmergency, emergency_id_for, new_id
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

REPORT = {"type": "fire", "priority": 2, "lat": 60.1699, "lon": 24.9384, "description": "smoke"}


def test_emergency_id_is_derived_from_the_command_id() -> None:
    fields = {"region": "r1", "type": "fire", "priority": 2, "lat": 60.1, "lon": 24.9}
    first = ReportEmergency(command_id="client-7", **fields)
    retry = ReportEmergency(command_id="client-7", **{**fields, "priority": 1})
    other = ReportEmergency(command_id="client-8", **fields)
    assert first.emergency_id == retry.emergency_id == emergency_id_for("client-7")
    assert other.emergency_id != first.emergency_id
    generated = ReportEmergency(**fields)  # server-made command id: random, so is its emergency's
    assert generated.emergency_id == emergency_id_for(generated.command_id)
    assert len(generated.emergency_id) == len(new_id()) == 32
    assert set(generated.emergency_id) <= set("0123456789abcdef")
    # a stored command keeps the id it was written with
    assert ReportEmergency(emergency_id="e-old", **fields).emergency_id == "e-old"


def test_a_retried_report_names_the_emergency_that_exists(
    api_settings, running_api, running_worker
):
    settings = api_settings(command_timeout_s=1.0)
    api = running_api(settings)
    body = {**REPORT, "command_id": "fault-report-1"}
    # the worker is down: the report and a client's retry of it are both written, both 202
    answers = [api.post("/api/emergencies", json=body) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    named = [a.json()["emergency_id"] for a in answers]
    running_worker(settings)
    # once the worker is back, one more retry: the worker's recorded outcome (201), or 202
    # if it is still working through the backlog
    last = api.post("/api/emergencies", json=body)
    assert last.status_code in (201, 202), last.text
    named.append(last.json()["id" if last.status_code == 201 else "emergency_id"])

    def tracked(emergency_id: str) -> bool:
        return api.get(f"/api/emergencies/{emergency_id}").status_code == 200

    wait_for(lambda: tracked(named[-1]), timeout=60, message="the emergency in the read model")
    missing = [e for e in named if not tracked(e)]
    assert not missing, f"answers named emergencies that do not exist: {missing}"
    assert len(set(named)) == 1
    state = api.get("/api/state", headers={"Authorization": "Bearer dev-authority"}).json()
    assert [e["id"] for e in state["emergencies"]] == named[:1]
