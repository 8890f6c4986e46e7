from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from dispatchwire.settings import Settings
from tests.api.helpers import EventLog, RunningApi

FAST = {"heartbeat_s": 0.5, "command_timeout_s": 1.5, "retry_ms": 500}


@pytest.fixture
def api_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings with topics created and short heartbeats/timeouts for tests."""
    from infra.topics import ensure_topics

    def factory(**overrides: object) -> Settings:
        s = make_settings(**{**FAST, **overrides})
        ensure_topics(s)
        return s

    return factory


@pytest.fixture
def running_api() -> Iterator[Callable[..., RunningApi]]:
    """Factory: start the real API server for some settings; stopped at the end."""
    started: list[RunningApi] = []

    def factory(settings: Settings, ready: bool = True) -> RunningApi:
        api = RunningApi(settings)
        started.append(api)
        return api.start(ready=ready)

    yield factory
    for api in started:
        if api.thread.is_alive():
            api.stop()


@pytest.fixture
def event_log() -> Iterator[Callable[[Settings], EventLog]]:
    logs: list[EventLog] = []

    def factory(settings: Settings) -> EventLog:
        log = EventLog(settings)
        logs.append(log)
        return log

    yield factory
    for log in logs:
        log.close()
