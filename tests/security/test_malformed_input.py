"""The malformed-input table (issue 11 items 3, 7, 12, 13): every case is a 4xx naming the
field and the reason, never a 500, and the API goes on serving afterwards."""

from __future__ import annotations

import httpx
import pytest
from httpx_sse import connect_sse

from tests.api.helpers import data
from tests.security.conftest import AUTHORITY

pytestmark = pytest.mark.kafka

JSON = {"Content-Type": "application/json"}
REPORT = b'{"type": "fire", "priority": 2, "lat": 60.1699, "lon": 24.9384}'
DEEP = b"[" * 16_000  # RecursionError in json.loads
LONG_INT = b'{"type": "fire", "priority": ' + b"7" * 5_000 + b', "lat": 60.17, "lon": 24.94}'
COMMANDS = [
    ("/api/emergencies", {}),
    ("/api/emergencies/e1/dispatch", AUTHORITY),
    ("/api/emergencies/e1/complete", AUTHORITY),
    ("/api/emergencies/e1/cancel", AUTHORITY),
    ("/api/units/u1/status", AUTHORITY),
]


def report(**fields: object) -> bytes:
    import json

    body = {"type": "fire", "priority": 2, "lat": 60.1699, "lon": 24.9384, **fields}
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


# (name, path, headers, body, status, field)
CASES = [
    *[
        (f"deep-nesting {path}", path, {**hdrs, **JSON}, DEEP, 400, "body")
        for path, hdrs in COMMANDS
    ],
    *[
        (f"5000-digit integer {path}", path, {**hdrs, **JSON}, LONG_INT, 400, "body")
        for path, hdrs in COMMANDS
    ],
    *[
        (
            f"text/plain {path}",
            path,
            {**hdrs, "Content-Type": "text/plain"},
            REPORT,
            415,
            "Content-Type",
        )
        for path, hdrs in COMMANDS
    ],
    (
        "form post",
        "/api/emergencies",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"type=fire&lat=60.17&lon=24.94",
        415,
        "Content-Type",
    ),
    ("no content type", "/api/emergencies", {}, REPORT, 415, "Content-Type"),
    ("lat true", "/api/emergencies", JSON, report(lat=True), 422, "lat"),
    ("lon false", "/api/emergencies", JSON, report(lon=False), 422, "lon"),
    ("lat as a string", "/api/emergencies", JSON, report(lat="60.17"), 422, "lat"),
    ("priority true", "/api/emergencies", JSON, report(priority=True), 422, "priority"),
    ("priority 2.5", "/api/emergencies", JSON, report(priority=2.5), 422, "priority"),
    ("client region", "/api/emergencies", JSON, report(region="hki-ne"), 422, "region"),
    ("made-up region", "/api/emergencies", JSON, report(region="nowhere"), 422, "region"),
    ("south pole", "/api/emergencies", JSON, report(lat=-89.9, lon=-179.9), 422, "lat"),
    ("Tampere", "/api/emergencies", JSON, report(lat=61.4978, lon=23.7610), 422, "lat"),
    (
        "status true",
        "/api/units/u1/status",
        {**AUTHORITY, **JSON},
        b'{"status": true}',
        422,
        "status",
    ),
]


@pytest.mark.parametrize(
    ("name", "path", "headers", "body", "status", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_malformed_body_is_a_4xx_naming_the_field(
    module_api, name, path, headers, body, status, field
):
    response = httpx.post(module_api.url + path, content=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"]
    named = [f for f in answer["fields"] if f["field"] == field]
    assert named and named[0]["reason"], answer
    assert "Traceback" not in response.text


def test_outside_the_service_area_says_so(module_api):
    response = httpx.post(
        module_api.url + "/api/emergencies",
        content=report(lat=-89.9, lon=-179.9),
        headers=JSON,
        timeout=30,
    )
    assert response.status_code == 422
    assert "outside the served area" in response.json()["fields"][0]["reason"]


def first_event(api, headers: dict, params: dict | None = None):
    with (
        httpx.Client(timeout=15) as client,
        connect_sse(
            client, "GET", api.url + "/api/stream", headers=headers, params=params
        ) as source,
    ):
        assert source.response.status_code == 200
        return next(source.iter_sse())


# "²" passes str.isdigit() but not int(); so do other scripts' digits
@pytest.mark.parametrize("last_event_id", ["²", "1.²", "٣", "12.x", "1" * 999])
def test_a_foreign_digit_in_last_event_id_is_a_reset(module_api, last_event_id):
    header = {**AUTHORITY, "Last-Event-ID": last_event_id.encode("utf-8")}
    for event in (
        first_event(module_api, header),
        first_event(module_api, AUTHORITY, {"last_event_id": last_event_id}),
    ):
        assert event.event == "snapshot"
        assert data(event)["reset"] is True


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "99999999999999999999"}, "from"),
        ({"to": "99999999999999999999"}, "to"),
        ({"from": "²"}, "from"),
        ({"from_position": "0:²"}, "from_position"),
        ({"speed": "nan"}, "speed"),
    ],
)
def test_replay_window_out_of_range_is_a_400(module_api, query, field):
    response = httpx.get(
        module_api.url + "/api/replay/stream", params=query, headers=AUTHORITY, timeout=30
    )
    assert response.status_code == 400, response.text
    assert [f for f in response.json()["fields"] if f["field"] == field]


def test_still_serving_after_the_table(module_api):
    for case in CASES:
        httpx.post(module_api.url + case[1], content=case[3], headers=case[2], timeout=30)
    assert httpx.get(module_api.url + "/readyz", timeout=10).status_code == 200
    state = httpx.get(module_api.url + "/api/state", headers=AUTHORITY, timeout=10)
    assert state.status_code == 200
    assert state.json()["emergencies"] == []  # none of the refused reports was written
