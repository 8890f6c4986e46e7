"""Shared fixtures: one real Kafka broker per test session, own topics per test.

Set DISPATCHWIRE_KAFKA_BOOTSTRAP to use a running broker; otherwise the session starts
its own (fetched into the cache like ``dispatchwire kafka up``) on a free loopback port
and stops it at the end, pass or fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dispatchwire.settings import Settings
from infra.kafka import KafkaDistribution, LocalBroker, free_port
from infra.topics import ensure_topics

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("DISPATCHWIRE_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    base = Settings()
    data_dir = Path(tempfile.mkdtemp(prefix="dispatchwire-test-kafka-"))
    port = free_port()
    controller = free_port()
    broker = LocalBroker(
        distribution=KafkaDistribution(base.kafka_version, base.cache_dir),
        data_dir=data_dir,
        port=port,
        controller_port=controller,
        heap="768m",
    )
    try:
        broker.start()
        yield broker.bootstrap
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def make_settings(kafka_bootstrap: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings factory: each call gets topics and a Faust app id of its own."""

    def factory(**overrides: object) -> Settings:
        tag = uuid.uuid4().hex[:10]
        values: dict[str, object] = {
            "kafka_bootstrap": kafka_bootstrap,
            "topic_prefix": f"t{tag}.",
            "app_id": f"dw-test-{tag}",
            "data_dir": tmp_path / f"data-{tag}",
            "sink_db": tmp_path / f"data-{tag}" / "sink.duckdb",
            "partitions": 2,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    s = make_settings()
    ensure_topics(s)
    return s


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> object:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child ``dispatchwire`` process see ``settings``."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        elif isinstance(value, (tuple, list)):
            import json

            value = json.dumps(list(value))
        env[f"DISPATCHWIRE_{name.upper()}"] = str(value)
    return env
