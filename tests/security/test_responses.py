"""What responses give away (issue 11 items 6, 11, 16): the tracking view without the
reporter, security headers on every response, and prod mode's protections."""

from __future__ import annotations

import httpx
import pytest

from dispatchwire.errors import ConfigurationError
from dispatchwire.settings import DEV_TOKENS, Settings
from tests.security.conftest import AUTHORITY, wait_in_read_model, write_emergency

pytestmark = pytest.mark.kafka

NAME, PHONE = "Alice Example", "+358 40 123 4567"


@pytest.fixture(scope="module")
def reported(module_api) -> str:
    """An emergency with a reporter, in the API's read model."""
    reporter = {"name": NAME, "phone": PHONE}
    return wait_in_read_model(module_api, write_emergency(module_api.settings, reporter))


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer dev-unit"}, {"Authorization": "Bearer dev-reporter"}]
)
def test_tracking_view_has_no_reporter_and_is_not_stored(module_api, reported, headers):
    response = module_api.get(f"/api/emergencies/{reported}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "PENDING" and body["description"] == "fell down"
    assert "unit" in body  # the unit on its way (none yet)
    assert "reporter" not in body
    assert NAME not in response.text and PHONE not in response.text
    assert response.headers["cache-control"] == "no-store"


def test_authority_sees_the_reporter(module_api, reported):
    for kw in ({"headers": AUTHORITY}, {"cookies": {"dw_token": "dev-authority"}}):
        response = module_api.get(f"/api/emergencies/{reported}", **kw)
        assert response.json()["reporter"] == {"name": NAME, "phone": PHONE}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/state", AUTHORITY),
        ("/api/emergencies/nope", {}),
        ("/healthz", {}),
        ("/openapi.json", {}),
        ("/metrics", {}),
        ("/static/js/api.js", {}),
        ("/static/favicon.svg", {}),
    ],
)
def test_every_response_has_the_security_headers(module_api, path, headers):
    response = module_api.get(path, headers=headers)
    assert response.status_code in (200, 404)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def test_pages_keep_their_own_cache_policy(module_api):
    response = module_api.get("/report")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-cache"  # views' own: revalidate


def test_errors_have_them_too(module_api):
    response = httpx.post(
        module_api.url + "/api/emergencies",
        content=b"{",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


# -- prod mode (item 16) --------------------------------------------------------------------

PROD = {
    "mode": "prod",
    "authority_token": "a" * 32,
    "unit_token": "u" * 32,
    "reporter_token": "r" * 32,
}


@pytest.mark.parametrize("name", sorted(DEV_TOKENS))
@pytest.mark.parametrize("mode", ["prod", "dev"])
def test_an_empty_token_refuses_to_start(name, mode):
    with pytest.raises(ConfigurationError, match=f"DISPATCHWIRE_{name.upper()}"):
        Settings(**{**PROD, "mode": mode, name: ""})
    with pytest.raises(ConfigurationError, match=f"DISPATCHWIRE_{name.upper()}"):
        Settings(**{**PROD, "mode": mode, name: "   "})


@pytest.fixture(scope="module")
def prod_api(kafka_bootstrap, tmp_path_factory):
    from tests.api.helpers import RunningApi
    from tests.security.conftest import new_settings

    settings = new_settings(
        kafka_bootstrap, tmp_path_factory.mktemp("sec-prod"), metrics_token="m" * 32, **PROD
    )
    api = RunningApi(settings).start()
    yield api
    api.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (bearer("wrong"), 401),
        (bearer("u" * 32), 403),
        (bearer("r" * 32), 403),
        (bearer("a" * 32), 200),
        (bearer("m" * 32), 200),
    ],
)
def test_prod_metrics_need_a_token(prod_api, headers, status):
    response = prod_api.get("/metrics", headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert "dispatchwire" in response.text


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({}, 401),
        ({"headers": bearer("wrong")}, 401),
        ({"headers": bearer("u" * 32)}, 403),
        ({"headers": bearer("r" * 32)}, 403),
        ({"cookies": {"dw_token": "u" * 32}}, 403),
        ({"params": {"token": "r" * 32}}, 403),
    ],
)
def test_snapshot_is_403_for_another_role(prod_api, kw, status):
    response = prod_api.get("/api/snapshot", **kw)
    assert response.status_code == status, response.text
    assert response.json()["fields"][0]["field"] == "Authorization"


def test_snapshot_takes_the_authority_cookie(prod_api):
    response = prod_api.get("/api/snapshot", cookies={"dw_token": "a" * 32})
    # past the role check: no sink database in this test, so 503 naming what to start
    assert response.status_code == 503, response.text
    assert "dispatchwire sink" in response.json()["error"]
