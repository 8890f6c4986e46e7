"""One log position form across the API, the replay and the CLI: a position copied from
any of them works in all of them (real broker, real server, the real CLI)."""

from __future__ import annotations

import httpx
import pytest
from httpx_sse import connect_sse

from analytics.logio import LogWindow, Window
from schemas import decode_event
from tests.analytics.conftest import run_cli
from tests.api.helpers import AUTHORITY, SseClient, data
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka


def _replay_ids(api, query: str) -> list[tuple[str, str]]:
    with (
        httpx.Client(timeout=httpx.Timeout(30.0)) as client,
        connect_sse(
            client, "GET", f"{api.url}/api/replay/stream?{query}", headers=AUTHORITY
        ) as source,
    ):
        return [(m.event, m.id) for m in source.iter_sse()]


def test_a_replay_id_resumes_the_live_stream(api_settings, running_api, event_log) -> None:
    settings = api_settings()
    log = event_log(settings)
    created = [log.emergency(region="north") for _ in range(3)]
    api = running_api(settings)
    messages = _replay_ids(api, "speed=max")
    body = [
        (name, i) for name, i in messages if name not in ("snapshot", "replay_end", "replay_clock")
    ]
    assert len(body) == 3
    # The id after the second record, handed to the live stream as Last-Event-ID.
    with SseClient(api, last_event_id=body[1][1]) as client:
        first = client.next()
    assert first.event == "emergency_created", first.event
    assert data(first)["id"] == created[2].emergency.id
    # The replay's end and the live stream's position are the same string.
    assert messages[-1][1] == api.get("/api/state", headers=AUTHORITY).json()["position"]


def test_a_state_position_bounds_a_cli_replay(api_settings, running_api, event_log) -> None:
    settings = api_settings()
    log = event_log(settings)
    before = [log.emergency(region=r) for r in ("north", "south")]
    api = running_api(settings)
    position = api.get("/api/state", headers=AUTHORITY).json()["position"]
    after = log.emergency(region="east")
    wait_for(
        lambda: api.get("/api/state", headers=AUTHORITY).json()["position"] != position,
        message="the read model to fold the third report",
    )

    def replayed(flag: str) -> list[str]:
        target = settings.topic(f"replayed{flag}")
        run_cli(settings, "replay", "--to-topic", target, flag, position, "--speed", "max")
        return sorted(
            decode_event(r.value).emergency.id  # type: ignore[attr-defined]
            for r in LogWindow(settings, Window(), target).records()
        )

    assert replayed("--to-position") == sorted(e.emergency.id for e in before)
    assert replayed("--from-position") == [after.emergency.id]
