"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine); these checks
keep them in step with the code: every service runs a real CLI subcommand, and every
package the app needs is copied into the image."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from dispatchwire.cli import subcommands
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
