from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dispatchwire.errors import ConfigurationError
from dispatchwire.settings import Settings
from infra.kafka import KafkaDistribution, LocalBroker, free_port, min_heap, port_answers


def test_settings_read_the_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    monkeypatch.setenv("DISPATCHWIRE_API_PORT", "8123")
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.api_port == 8123
    assert "dev-authority" not in repr(s)  # secrets are masked when printed


def test_dev_tokens_are_refused_outside_dev() -> None:
    with pytest.raises(ConfigurationError, match="DISPATCHWIRE_AUTHORITY_TOKEN"):
        Settings(mode="prod")
    ok = Settings(mode="prod", authority_token="a" * 32, unit_token="b" * 32,
                  reporter_token="c" * 32)
    assert ok.mode == "prod"


def test_topic_prefix_applies_to_every_topic() -> None:
    s = Settings(topic_prefix="x.")
    assert (s.commands_topic, s.events_topic) == ("x.dispatch.commands", "x.dispatch.events")


@pytest.mark.parametrize(("heap", "half"), [("512m", "256m"), ("1g", "1g"), ("2g", "1g")])
def test_min_heap(heap: str, half: str) -> None:
    assert min_heap(heap) == half


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_starts_answers_and_stops_without_leftovers(tmp_path: Path) -> None:
    base = Settings()
    broker = LocalBroker(KafkaDistribution(base.kafka_version, base.cache_dir), tmp_path / "b",
                         port=free_port(), controller_port=free_port(), heap="384m")
    broker.start()
    try:
        pid = broker.running_pid()
        assert pid and port_answers("127.0.0.1", broker.port)
        broker.start()  # a second start finds it running and does nothing
        assert broker.running_pid() == pid
    finally:
        assert broker.stop()
    assert broker.running_pid() is None
    assert not port_answers("127.0.0.1", broker.port)
    assert not Path(f"/proc/{pid}").exists()
    assert broker.stop() is False


def test_cli_help_lists_every_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "dispatchwire", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "kafka" in out
