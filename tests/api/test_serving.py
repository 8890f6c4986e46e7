"""``dispatchwire api`` as a process, its shutdown with streams open, and the page headers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from api.app import CONTENT_SECURITY_POLICY, ContentSecurityPolicy
from infra.kafka import free_port
from tests.conftest import settings_env, wait_for

pytestmark = pytest.mark.kafka


def test_cli_serves_prints_dev_tokens_and_stops_with_a_stream_open(api_settings, tmp_path):
    settings = api_settings()
    port = free_port()
    env = settings_env(settings)
    env["DISPATCHWIRE_API_PORT"] = str(port)
    out = tmp_path / "api.log"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatchwire", "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, out.read_text()
            try:
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, interval=0.2, message="dispatchwire api to be ready")
        text = out.read_text()
        assert "authority dev-authority" in text and "unit      dev-unit" in text
        with (
            httpx.Client(timeout=15) as client,
            client.stream(
                "GET", url + "/api/stream", headers={"Authorization": "Bearer dev-authority"}
            ) as stream,
        ):
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: snapshot"
            os.killpg(proc.pid, signal.SIGTERM)
            # the open stream does not hold the shutdown (uvicorn re-raises the signal
            # once it has shut down cleanly, hence -SIGTERM)
            assert proc.wait(20) in (0, -signal.SIGTERM)
            rest = list(lines)
        log_text = out.read_text()
        assert "Application shutdown complete" in log_text
        assert "without completing response" not in log_text
        assert ": closing: server shutting down" in rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_pages_are_served_with_a_content_security_policy(api_settings, running_api):
    api = running_api(api_settings())
    page = api.get("/report")
    if page.status_code == 404:
        pytest.skip("views has no /report page in this tree")
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_csp_middleware_adds_the_header_to_html_only():
    async def html(request):
        return HTMLResponse("<p>hi</p>")

    async def own(request):
        return HTMLResponse("<p>hi</p>", headers={"Content-Security-Policy": "default-src 'none'"})

    async def api(request):
        return JSONResponse({})

    app = ContentSecurityPolicy(
        Starlette(routes=[Route("/", html), Route("/own", own), Route("/api", api)])
    )
    import asyncio

    async def fetch() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(p) for p in ("/", "/own", "/api")]

    page, own_page, json_response = asyncio.run(fetch())
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert own_page.headers["content-security-policy"] == "default-src 'none'"
    assert "content-security-policy" not in json_response.headers
