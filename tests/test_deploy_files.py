"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine); these checks
keep them in step with the code: every service runs a real CLI subcommand, and every
package the app needs is copied into the image."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cli.main import subcommands
from dispatchwire.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = {n: s for n, s in COMPOSE["services"].items() if not n.startswith("kafka")}


def test_every_app_service_runs_a_cli_subcommand() -> None:
    known = subcommands()
    for name, service in APP_SERVICES.items():
        assert service["command"][0] in known, f"{name}: {service['command']}"


def test_app_environment_names_real_settings() -> None:
    fields = {f"DISPATCHWIRE_{k.upper()}" for k in Settings.model_fields}
    for name, service in APP_SERVICES.items():
        for var in service["environment"]:
            assert var in fields, f"{name}: {var} is not a setting"


def test_kafka_nodes_form_one_quorum() -> None:
    nodes = {n: s for n, s in COMPOSE["services"].items() if n.startswith("kafka")}
    voters = next(iter(nodes.values()))["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    ids = {int(v.split("@")[0]) for v in voters.split(",")}
    assert {s["environment"]["KAFKA_NODE_ID"] for s in nodes.values()} == ids
    for service in nodes.values():
        assert service["image"].startswith("apache/kafka:")


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.M))
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"}
    assert packages <= copied, packages - copied


# --- the cluster topology (issue 14): 3 brokers, 2 workers, 2 APIs, the sink, the simulator

KAFKA_NODES = {n: s for n, s in COMPOSE["services"].items() if n.startswith("kafka")}


def _running(subcommand: str) -> list[str]:
    return [n for n, s in APP_SERVICES.items() if s["command"][0] == subcommand]


def test_compose_runs_the_cluster_topology() -> None:
    assert len(KAFKA_NODES) == 3
    assert len(_running("worker")) == 2
    assert len(_running("api")) == 2
    assert len(_running("sink")) == 1
    assert len(_running("simulate")) == 1


def test_api_replicas_publish_distinct_host_ports() -> None:
    published = [
        s["ports"][0].split(":")[0] for n, s in APP_SERVICES.items() if n in _running("api")
    ]
    assert len(set(published)) == len(published) == 2


def test_app_settings_ask_the_cluster_for_replication_3_and_two_in_sync() -> None:
    kafka_env = next(iter(KAFKA_NODES.values()))["environment"]
    for name, service in APP_SERVICES.items():
        env = service["environment"]
        settings = Settings(**{k.removeprefix("DISPATCHWIRE_").lower(): v for k, v in env.items()})
        assert settings.replication_factor == 3, name
        assert settings.min_insync_replicas == 2, name
        assert settings.replication_factor <= len(KAFKA_NODES)
        assert int(kafka_env["KAFKA_MIN_INSYNC_REPLICAS"]) == settings.min_insync_replicas
        assert int(kafka_env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == settings.replication_factor
        # every node is a bootstrap server, so clients start even with one node down
        advertised = {
            s["environment"]["KAFKA_ADVERTISED_LISTENERS"].split("//")[1]
            for s in KAFKA_NODES.values()
        }
        assert set(settings.kafka_bootstrap.split(",")) == advertised, name


def test_every_node_is_broker_and_controller_with_its_own_volume() -> None:
    volumes = set()
    for service in KAFKA_NODES.values():
        env = service["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        volumes.update(v.split(":")[0] for v in service["volumes"])
    assert len(volumes) == len(KAFKA_NODES)
