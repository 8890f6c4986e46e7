"""With the real worker: a command id is not a key to another client's command (issue 11
item 5), and a unit's token changes that unit only (item 8)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from schemas.commands import ReportEmergency, SetUnitStatus
from streams.decisions import Outcome
from tests.conftest import settings_env
from tests.security.conftest import AUTHORITY, wait_in_read_model, write_emergency

pytestmark = pytest.mark.kafka

ALICE = {
    "type": "medical",
    "priority": 1,
    "lat": 60.1699,
    "lon": 24.9384,
    "description": "Alice's father collapsed, 3rd floor",
    "reporter": {"name": "Alice Example", "phone": "+358 40 111 1111"},
}
MALLORY = {
    "type": "fire",
    "priority": 3,
    "lat": 60.1650,
    "lon": 24.9500,
    "description": "bin on fire",
    "reporter": {"name": "Mallory", "phone": "+358 1"},
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- item 5: command ids --------------------------------------------------------------------


def test_a_used_command_id_with_another_body_is_refused_and_reveals_nothing(stack):
    command_id = f"cid-{uuid.uuid4().hex[:12]}"
    first = stack.report({**ALICE, "command_id": command_id})
    assert first.status_code == 201, first.text
    alice_id = first.json()["id"]

    second = stack.report({**MALLORY, "command_id": command_id})
    assert second.status_code in (409, 422), second.text
    assert "already used" in second.json()["reason"]
    for secret in ("Alice", "+358 40 111", "collapsed", alice_id):
        assert secret not in second.text

    emergencies = stack.api.get("/api/emergencies", headers=AUTHORITY).json()
    assert [e["id"] for e in emergencies if e["description"] == "bin on fire"] == []
    assert [e["id"] for e in emergencies if e["id"] == alice_id] == [alice_id]


def test_the_api_does_not_hand_out_a_known_outcome_to_another_command(secure_settings, start_api):
    """The API's own shortcut (a recently seen outcome answers a retry at once) is taken
    only for the same report; without a worker to refuse it, another one is merely late."""
    api = start_api(secure_settings(command_timeout_s=1.0))
    command_id = f"cid-{uuid.uuid4().hex[:12]}"
    alice = {"name": "Alice Example", "phone": "+358 40 111 1111"}
    emergency_id = wait_in_read_model(
        api, write_emergency(api.settings, alice, command_id=command_id)
    )
    answer = api.post("/api/emergencies", json={**MALLORY, "command_id": command_id})
    assert answer.status_code == 202, answer.text
    assert "Alice" not in answer.text and emergency_id not in answer.text


def test_a_retry_of_the_same_command_is_answered_with_its_outcome(stack):
    command_id = f"cid-{uuid.uuid4().hex[:12]}"
    body = {**MALLORY, "description": f"retry {command_id}", "command_id": command_id}
    first = stack.report(body)
    assert first.status_code == 201, first.text
    again = stack.report(body)  # issued_at differs, the command does not
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    emergencies = stack.api.get("/api/emergencies", headers=AUTHORITY).json()
    assert len([e for e in emergencies if e["description"] == body["description"]]) == 1


def test_fingerprint_ignores_only_what_a_retry_changes():
    from streams.state import DispatchState, command_fingerprint, reused_id_outcome

    report = ReportEmergency(
        command_id="c1",
        region="hki-ne",
        type="fire",
        priority=2,
        lat=60.17,
        lon=24.94,
        description="smoke",
    )
    retry = report.model_copy(
        update={
            "issued_at": report.issued_at + timedelta(seconds=5),
            "emergency_id": "another-made-up-id",
        }
    )
    other = report.model_copy(update={"description": "not smoke"})
    assert command_fingerprint(retry) == command_fingerprint(report)
    assert command_fingerprint(other) != command_fingerprint(report)
    status = SetUnitStatus(command_id="c2", region="r", unit_id="u1", status="AVAILABLE")
    assert command_fingerprint(status) != command_fingerprint(
        status.model_copy(update={"unit_id": "u2"})
    )

    state = DispatchState({})
    state.put_record("c:c1", "c1", Outcome(), command_fingerprint(report))
    assert state.record("c:c1", "c1") is not None
    assert state.same_command("c:c1", command_fingerprint(retry))
    assert not state.same_command("c:c1", command_fingerprint(other))
    refusal = reused_id_outcome(other, command_fingerprint(other)).events[0]
    assert refusal.event_id != "c1:0" and "smoke" not in refusal.reason


# -- item 8: unit tokens --------------------------------------------------------------------


def test_the_shared_unit_token_changes_no_unit(stack):
    theirs = stack.units[1].unit_id
    shared = stack.api.post(
        f"/api/units/{theirs}/status", headers=bearer("dev-unit"), json={"status": "OUT_OF_SERVICE"}
    )
    assert shared.status_code == 403, shared.text
    assert "unit-token" in shared.json()["fields"][0]["reason"]
    units = {u["id"]: u for u in stack.api.get("/api/units", headers=AUTHORITY).json()}
    assert units[theirs]["status"] == "AVAILABLE"


def test_a_unit_token_changes_its_own_unit_only(stack):
    from api.auth import unit_token_for

    mine, theirs = stack.units[0].unit_id, stack.units[1].unit_id
    own = bearer(unit_token_for(stack.settings, mine))
    path = "/api/units/{}/status"
    refused = stack.api.post(path.format(theirs), headers=own, json={"status": "OUT_OF_SERVICE"})
    assert refused.status_code == 403, refused.text
    units = {u["id"]: u for u in stack.api.get("/api/units", headers=AUTHORITY).json()}
    assert units[theirs]["status"] == "AVAILABLE"

    changed = stack.api.post(path.format(mine), headers=own, json={"status": "OUT_OF_SERVICE"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["unit"]["status"] == "OUT_OF_SERVICE"
    back = stack.api.post(path.format(mine), headers=AUTHORITY, json={"status": "AVAILABLE"})
    assert back.status_code == 200, back.text
    # the unit's own token still reads the live feed, as the shared unit token does
    assert stack.api.get("/api/state", headers=own).status_code == 200


def test_a_forged_or_foreign_unit_token_is_refused(secure_settings):
    from api.auth import Auth, Role, unit_token_for

    settings = secure_settings()
    auth = Auth(settings)
    good = unit_token_for(settings, "hki-ne-amb-1")
    assert auth._role_for(good) is Role.UNIT
    assert auth.unit_of_token(good) == "hki-ne-amb-1"
    forged = good.replace("hki-ne-amb-1", "hki-sw-amb-1")
    assert auth._role_for(forged) is None
    assert auth._role_for(good[:-2]) is None
    other = secure_settings(authority_token="another-authority-secret")
    assert Auth(other)._role_for(good) is None  # a new authority token retires unit tokens


def test_unit_token_cli_prints_a_token_the_api_accepts(secure_settings):
    from api.auth import Auth, unit_token_for

    settings = secure_settings()
    out = subprocess.run(
        [sys.executable, "-m", "dispatchwire", "unit-token", "hki-ne-fire-1"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert out == unit_token_for(settings, "hki-ne-fire-1")
    assert Auth(settings).unit_of_token(out) == "hki-ne-fire-1"
