"""Issue 11, item 4: no token in a log line or on stdout, in prod mode, for accepted and
refused connections alike."""

from __future__ import annotations

import json
import logging
import secrets

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.security.server_fixtures import secure_api_fixture  # noqa: F401

pytestmark = pytest.mark.kafka


@pytest.fixture
def prod_tokens() -> dict[str, str]:
    return {
        name: f"{name}-{secrets.token_hex(16)}"
        for name in ("authority_token", "unit_token", "reporter_token")
    }


def test_no_token_reaches_the_logs_of_a_prod_server(secure_api, prod_tokens, caplog):
    caplog.set_level(logging.INFO)  # INFO and up of every logger, uvicorn's included
    api = secure_api(mode="prod", **prod_tokens)
    authority, unit = prod_tokens["authority_token"], prod_tokens["unit_token"]
    ws = api.url.replace("http", "ws") + "/ws"
    with ws_connect(f"{ws}?token={authority}&last_event_id=") as conn:  # accepted
        assert json.loads(conn.recv(timeout=10))["event"] == "snapshot"
    with (
        ws_connect(f"{ws}?token={authority}x&last_event_id=") as conn,  # refused: unknown
        pytest.raises(ConnectionClosed),
    ):
        conn.recv(timeout=10)
    with pytest.raises(InvalidStatus):  # refused at the handshake: foreign Origin
        ws_connect(f"{ws}?token={unit}", origin="https://evil.example")
    with httpx.stream("GET", f"{api.url}/api/stream?token={unit}", timeout=10) as stream:
        assert stream.status_code == 200
    assert httpx.get(f"{api.url}/api/stream?token=nope", timeout=10).status_code == 401
    assert api.get("/api/state", headers={"Authorization": f"Bearer {authority}"}).is_success
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "WebSocket /ws" in logged  # uvicorn's handshake lines were captured ...
    for name, token in prod_tokens.items():
        assert token not in logged, f"{name} in the logs"  # ... without a token
    assert "token=nope" not in logged  # nor a wrong one


def test_run_prints_no_real_token(make_settings, prod_tokens):
    from cli.run import banner  # before the fix: an f-string printing the secret

    prod = make_settings(mode="prod", **prod_tokens)
    assert prod_tokens["authority_token"] not in banner(prod)
    dev_with_secret = make_settings(authority_token=prod_tokens["authority_token"])
    assert prod_tokens["authority_token"] not in banner(dev_with_secret)
    assert "dev-authority" in banner(make_settings())  # the public default still is shown
