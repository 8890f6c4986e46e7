"""The auth matrix (issue 11): every endpoint x role x token carrier, one expected status
per cell.

Roles: no token, the reporter token, unit A's own token, unit B's own token, the shared
unit token (the units map), the authority token, a token that matches nothing. Carriers:
``Authorization: Bearer``, the ``dw_token`` cookie, ``?token=``. A carrier an endpoint does
not read leaves the request without a token (cookies only on GET, never on a command, so
another site cannot send a command with a dispatcher's cookie; ``?token=`` only where
EventSource needs it). Statuses past the role check: 404 for the unknown emergency and
unit the commands name (nothing is written), 422 for a report outside the served area,
503 for a snapshot without a sink database. ``/ws`` is left to the WebSocket tests (its
token handling is its own: first frame, close codes).
"""

from __future__ import annotations

import httpx
import pytest

from tests.security.conftest import wait_in_read_model, write_emergency

pytestmark = pytest.mark.kafka

UNIT_A, UNIT_B = "hki-ne-amb-1", "hki-sw-amb-1"
ROLES = ("none", "reporter", "unit", "other unit", "unit board", "authority", "wrong")
CARRIERS = ("header", "cookie", "query")
OUTSIDE = {"type": "fire", "priority": 2, "lat": -89.9, "lon": -179.9}
KNOWN = "{known}"  # the path of an emergency that exists

# endpoint: {carrier: statuses in ROLES order}
#                          none rep  unit othr board auth wrong
READERS_ANY_CARRIER_BUT_Q = {
    "header": (401, 403, 200, 200, 200, 200, 401),
    "cookie": (401, 403, 200, 200, 200, 200, 401),
    "query": (401, 401, 401, 401, 401, 401, 401),
}
AUTHORITY_COMMAND = {
    "header": (401, 403, 403, 403, 403, 404, 401),
    "cookie": (401, 401, 401, 401, 401, 401, 401),
    "query": (401, 401, 401, 401, 401, 401, 401),
}
PUBLIC = {c: (200,) * 7 for c in CARRIERS}
# anyone holding the id: the reporter's tracking view, once or as a stream
TRACKING = {
    "header": (200, 200, 200, 200, 200, 200, 401),
    "cookie": (200, 200, 200, 200, 200, 200, 401),
    "query": (200,) * 7,
}
MATRIX: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {
    ("POST", "/api/emergencies"): {
        "header": (422, 422, 422, 422, 422, 422, 401),
        "cookie": (422,) * 7,
        "query": (422,) * 7,
    },
    ("POST", "/api/emergencies/nope/dispatch"): AUTHORITY_COMMAND,
    ("POST", "/api/emergencies/nope/complete"): AUTHORITY_COMMAND,
    ("POST", "/api/emergencies/nope/cancel"): AUTHORITY_COMMAND,
    ("POST", f"/api/units/{UNIT_A}/status"): {
        "header": (401, 403, 404, 403, 403, 404, 401),
        "cookie": (401,) * 7,
        "query": (401,) * 7,
    },
    ("GET", "/api/state"): READERS_ANY_CARRIER_BUT_Q,
    ("GET", "/api/emergencies"): READERS_ANY_CARRIER_BUT_Q,
    ("GET", "/api/units"): READERS_ANY_CARRIER_BUT_Q,
    ("GET", f"/api/emergencies/{KNOWN}"): TRACKING,
    ("GET", f"/api/emergencies/{KNOWN}/stream"): TRACKING,
    ("GET", "/api/stream"): {c: (401, 403, 200, 200, 200, 200, 401) for c in CARRIERS},
    ("GET", "/api/snapshot"): {c: (401, 403, 403, 403, 403, 503, 401) for c in CARRIERS},
    ("GET", "/api/replay/stream"): {c: (401, 403, 403, 403, 403, 200, 401) for c in CARRIERS},
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # dev mode; prod mode: tests/security/test_responses.py
    ("GET", "/openapi.json"): PUBLIC,
}
CELLS = [
    (method, path, role, carrier, statuses[ROLES.index(role)])
    for (method, path), by_carrier in MATRIX.items()
    for carrier, statuses in by_carrier.items()
    for role in ROLES
]


@pytest.fixture(scope="module")
def known(module_api) -> str:
    return wait_in_read_model(
        module_api, write_emergency(module_api.settings, {"name": "A", "phone": "1"})
    )


def token_of(settings, role: str) -> str | None:
    from api.auth import unit_token_for

    return {
        "none": None,
        "reporter": "dev-reporter",
        "unit": unit_token_for(settings, UNIT_A),
        "other unit": unit_token_for(settings, UNIT_B),
        "unit board": "dev-unit",
        "authority": "dev-authority",
        "wrong": "not-a-token",
    }[role]


@pytest.mark.parametrize(
    ("method", "path", "role", "carrier", "status"),
    CELLS,
    ids=[f"{m} {p} {r} {c}" for m, p, r, c, _ in CELLS],
)
def test_auth_matrix(module_api, known, method, path, role, carrier, status):
    token = token_of(module_api.settings, role)
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if token is not None:
        if carrier == "header":
            headers["Authorization"] = f"Bearer {token}"
        elif carrier == "cookie":
            headers["Cookie"] = f"dw_token={token}"
        else:
            params["token"] = token
    kw: dict = {"headers": headers, "params": params}
    if method == "POST":
        kw["json"] = (
            OUTSIDE
            if path == "/api/emergencies"
            else ({"status": "AVAILABLE"} if "/units/" in path else {})
        )
    url = module_api.url + path.replace(KNOWN, known)
    with httpx.Client(timeout=30) as client, client.stream(method, url, **kw) as response:
        got = response.status_code
        if got >= 400:
            response.read()
            body = response.json()
            assert body["error"] and isinstance(body["fields"], list), body
            if got in (401, 403):
                assert body["fields"][0]["field"] == "Authorization"
    assert got == status, f"{method} {path} as {role} by {carrier}"
