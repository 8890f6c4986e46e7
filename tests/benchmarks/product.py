"""Starting the real dispatchwire parts (api, worker) for a benchmark, on their own topics."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen
from typing import Any

from dispatchwire.settings import Settings
from infra.kafka import free_port
from tests.benchmarks.procs import ROOT, running, wait_http

DISPATCHWIRE = str(Path(os.path.dirname(__import__("sys").executable)) / "dispatchwire")
LOG_DIR = ROOT / "bench-results" / "logs"


def available(subcommand: str) -> str | None:
    """None when ``dispatchwire <subcommand>`` exists, else why it cannot be measured."""
    try:
        from cli.main import subcommands

        if subcommand in subcommands():
            return None
    except Exception as exc:
        return f"`dispatchwire` CLI does not load ({exc!r})"
    return f"`dispatchwire {subcommand}` has not landed yet"


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def bench_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings with topics, app id and data dir of their own, so runs never collide."""
    tag = uuid.uuid4().hex[:8]
    data = ROOT / "bench-results" / "data" / tag
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": f"bench{tag}.",
        "app_id": f"dw-bench-{tag}",
        "data_dir": data,
        "sink_db": data / "sink.duckdb",
        "partitions": 1,
        "report_rate_per_minute": 10_000_000,
        # every load client connects from 127.0.0.1: lift the live connection caps
        "api_max_live_per_address": 0,
        "api_max_live_total": 0,
        "client_queue_size": 1_000,
        "worker_web_port": free_port(),
    }
    values.update(overrides)
    return Settings(**values)


def env_for(settings: Settings) -> dict[str, str]:
    from tests.conftest import settings_env

    env = settings_env(settings)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@contextlib.contextmanager
def api(
    settings: Settings, core: int | None, name: str = "api", command: list[str] | None = None
) -> Iterator[tuple[Popen[bytes], int]]:
    """``dispatchwire api`` (or ``command``) on a free port; yields (process, port) once
    /healthz answers."""
    port = free_port()
    env = env_for(settings)
    env["DISPATCHWIRE_API_PORT"] = str(port)
    env["DISPATCHWIRE_API_HOST"] = "127.0.0.1"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args = command or [DISPATCHWIRE, "api"]
    with running(args, core, env=env, log=LOG_DIR / f"{name}.log") as proc:
        wait_http(port, "/healthz", proc, timeout=90.0)
        with contextlib.suppress(TimeoutError):
            wait_http(port, "/readyz", proc, timeout=60.0)
        yield proc, port


@contextlib.contextmanager
def worker(settings: Settings, core: int | None, name: str = "worker") -> Iterator[Popen[bytes]]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with running(
        [DISPATCHWIRE, "worker"], core, env=env_for(settings), log=LOG_DIR / f"{name}.log"
    ) as proc:
        yield proc
