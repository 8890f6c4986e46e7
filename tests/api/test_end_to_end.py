"""The seed's four scenarios through HTTP, with the real worker, watched by live clients."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect as ws_connect

from api.auth import unit_token_for
from streams.seed import seed
from tests.api.helpers import AUTHORITY, UNIT, SseClient, data

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# a point inside the bundled Helsinki extract
LAT, LON = 60.1699, 24.9384


class ClientView:
    """What a dashboard holds: the snapshot, then every message applied in order."""

    def __init__(self, snapshot: dict) -> None:
        self.emergencies = {e["id"]: e for e in snapshot["emergencies"]}
        self.units = {u["id"]: u for u in snapshot["units"]}

    def apply(self, event: str, body: dict) -> None:
        if event == "emergency_created":
            self.emergencies[body["id"]] = body
        elif event == "emergency_updated":
            self.emergencies[body["emergency"]["id"]] = body["emergency"]
            if body.get("unit"):
                self.units[body["unit"]["id"]] = body["unit"]
        elif event == "unit_status_update":
            self.units[body["unit_id"]] = body["unit"]
        elif event == "unit_location":
            unit = self.units[body["unit_id"]]
            unit.update(
                {k: body[k] for k in ("lat", "lon", "heading", "eta_s", "route_index", "version")}
            )

    def as_state(self) -> dict:
        return {
            "emergencies": [self.emergencies[k] for k in sorted(self.emergencies)],
            "units": [self.units[k] for k in sorted(self.units)],
        }


def test_report_dispatch_complete_seen_by_every_client(api_settings, running_api, running_worker):
    settings = api_settings(tick_seconds=60.0, command_timeout_s=20.0)
    running_worker(settings)
    units = seed(settings)
    api = running_api(settings)
    with (
        SseClient(api) as a,
        SseClient(api, headers=UNIT) as b,
        ws_connect(api.url.replace("http", "ws") + "/ws?token=dev-authority") as ws,
    ):
        views = [ClientView(data(a.next())), ClientView(data(b.next()))]
        ws_first = json.loads(ws.recv(timeout=15))
        assert ws_first["event"] == "snapshot"
        ws_view = ClientView(ws_first["data"])
        clients = [a, b]

        def watch(event: str, predicate) -> None:
            for client, view in zip(clients, views, strict=True):
                for msg in client.until(lambda m: m.event == event and predicate(data(m))):
                    view.apply(msg.event, data(msg))

        # the units registered by seed reach the dashboards live
        for client, view in zip(clients, views, strict=True):
            while len(view.units) < len(units):
                msg = client.next()
                view.apply(msg.event, data(msg))

        # 1. a new emergency reaches every client
        report = api.post(
            "/api/emergencies",
            json={
                "type": "medical",
                "priority": 1,
                "lat": LAT,
                "lon": LON,
                "description": "person collapsed",
                "reporter": {"name": "Aino", "phone": "+358 40"},
            },
        )
        assert report.status_code == 201, report.text
        emergency = report.json()
        assert emergency["status"] == "PENDING" and emergency["region"].startswith("hki-")
        assert report.headers["location"] == f"/api/emergencies/{emergency['id']}"
        watch("emergency_created", lambda d: d["id"] == emergency["id"])

        # 2. dispatch: ASSIGNED + DISPATCHED
        dispatched = api.post(f"/api/emergencies/{emergency['id']}/dispatch", headers=AUTHORITY)
        assert dispatched.status_code == 200, dispatched.text
        body = dispatched.json()
        assert body["emergency"]["status"] == "ASSIGNED"
        assert body["unit"]["status"] == "DISPATCHED" and body["unit"]["type"] == "ambulance"
        unit_id = body["unit"]["id"]
        watch("emergency_updated", lambda d: d["action"] == "assigned")
        # the reporter's tracking view names the unit on its way, with its ETA
        tracked = api.get(f"/api/emergencies/{emergency['id']}").json()
        assert tracked["status"] == "ASSIGNED" and tracked["unit"]["id"] == unit_id
        assert tracked["unit"]["callsign"] and tracked["unit"]["eta_s"] is not None
        assert "route" not in tracked["unit"]
        watch(
            "unit_status_update", lambda d: d["unit_id"] == unit_id and d["status"] == "DISPATCHED"
        )

        # a command against the wrong state is rejected with the reason
        again = api.post(f"/api/emergencies/{emergency['id']}/dispatch", headers=AUTHORITY)
        assert again.status_code == 409 and again.json()["reason"]

        # 3. complete: COMPLETED + AVAILABLE
        done = api.post(f"/api/emergencies/{emergency['id']}/complete", headers=AUTHORITY)
        assert done.status_code == 200, done.text
        assert done.json()["emergency"]["status"] == "COMPLETED"
        assert done.json()["unit"]["status"] == "AVAILABLE"
        watch("emergency_updated", lambda d: d["action"] == "completed")
        watch(
            "unit_status_update", lambda d: d["unit_id"] == unit_id and d["status"] == "AVAILABLE"
        )

        # 4. every client ends with the same state as the server, at the same position
        state = api.get("/api/state", headers=AUTHORITY).json()
        last_ids = {a.seen[-1].id, b.seen[-1].id}
        assert last_ids == {state["position"]}
        expected = {"emergencies": state["emergencies"], "units": state["units"]}
        assert [e["reporter"]["name"] for e in state["emergencies"]] == ["Aino"]
        # the unit token's client has all of it but who called (tests/api/test_unit_feed.py)
        for_units = {
            **expected,
            "emergencies": [{**e, "reporter": None} for e in expected["emergencies"]],
        }
        for view, wanted in zip(views, (expected, for_units), strict=True):
            assert view.as_state() == wanted
        while True:  # the WebSocket client saw the same messages with the same ids
            frame = json.loads(ws.recv(timeout=15))
            ws_view.apply(frame["event"], frame["data"])
            if frame["id"] == state["position"]:
                break
        assert ws_view.as_state() == expected
        assert [m.id for m in a.seen] == [m.id for m in b.seen]


def test_cancel_and_unit_status_through_http(api_settings, running_api, running_worker):
    settings = api_settings(tick_seconds=60.0, command_timeout_s=20.0)
    running_worker(settings)
    units = seed(settings)
    api = running_api(settings)
    report = api.post("/api/emergencies", json={"type": "police", "lat": LAT, "lon": LON})
    assert report.status_code == 201, report.text
    emergency_id = report.json()["id"]
    cancelled = api.post(
        f"/api/emergencies/{emergency_id}/cancel", headers=AUTHORITY, json={"reason": "false alarm"}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["emergency"]["status"] == "CANCELLED"
    assert (
        api.post(f"/api/emergencies/{emergency_id}/complete", headers=AUTHORITY).status_code == 409
    )

    unit_id = units[0].unit_id
    with SseClient(api, headers=UNIT, params={"events": "unit_status_update"}) as client:
        client.next()
        own = {"Authorization": f"Bearer {unit_token_for(api.settings, unit_id)}"}
        changed = api.post(
            f"/api/units/{unit_id}/status", headers=own, json={"status": "OUT_OF_SERVICE"}
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["unit"]["status"] == "OUT_OF_SERVICE"
        seen = client.until(
            lambda m: data(m)["unit_id"] == unit_id and data(m)["status"] == "OUT_OF_SERVICE"
        )
        assert {m.event for m in seen} == {"unit_status_update"}
    assert (
        api.post(
            "/api/units/nope/status", headers=AUTHORITY, json={"status": "AVAILABLE"}
        ).status_code
        == 404
    )
