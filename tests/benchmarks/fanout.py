"""Fan-out, broadcast reach and idle memory: the live API against the three peer designs.

One run = one server process (pinned to the server core) + one load-client process (pinned
to the other core). The server's RSS is read before the clients connect and again once they
are all connected and idle; then the client triggers broadcasts at a fixed offered rate in
two phases: ``reach`` (a low rate: how long one broadcast takes to reach 95 % / all clients)
and ``burst`` (a rate far above capacity: deliveries per second).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.kafka import free_port
from tests.benchmarks import product
from tests.benchmarks.procs import (
    CLIENT_CORE,
    PYTHON,
    SERVER_CORE,
    running,
    settle_rss,
    spawn,
    stop,
    wait_http,
)
from tests.benchmarks.report import Row

PEER_LABELS = {
    "socketio": "(a) python-socketio emit from handler",
    "naive_sse": "(b) naive sse-starlette",
    "encode_once": "(c) bare encode-once",
    "api": "dispatchwire API (Kafka read model)",
    "api_gc_freeze": "dispatchwire API + gc.freeze() after start-up (experiment)",
}
REGION = "bench"


def emergency(marker: str = "@@MARK@@", ident: str = "@@SEQ@@") -> dict[str, Any]:
    """A realistic emergency (the payload of ``emergency_created``) carrying the marker."""
    from schemas.entities import Emergency, EmergencyType, Reporter

    return Emergency(
        id=ident,
        region=REGION,
        type=EmergencyType.MEDICAL,
        priority=2,
        lat=60.1699,
        lon=24.9384,
        description=f"Person collapsed at the tram stop, breathing {marker}",
        reporter=Reporter(name="Bench Reporter", phone="+358 40 123 4567"),
        reported_at=datetime(2025, 1, 1, tzinfo=UTC),
    ).model_dump(mode="json")


def peer_template() -> str:
    return json.dumps(emergency(), separators=(",", ":"))


def event_template() -> str:
    """An ``emergency_created`` event as the worker would write it to ``dispatch.events``."""
    from schemas.codec import encode
    from schemas.events import EmergencyCreated

    event = EmergencyCreated(
        event_id="@@SEQ@@:0",
        command_id="@@SEQ@@",
        region=REGION,
        emergency=emergency(),
        occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return encode(event).decode()


@dataclass
class Phases:
    reach_count: int
    reach_rate: float
    burst_count: int
    burst_rate: float
    drain_s: float

    def config(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "reach",
                "count": self.reach_count,
                "rate": self.reach_rate,
                "drain_s": self.drain_s,
            },
            {
                "name": "burst",
                "count": self.burst_count,
                "rate": self.burst_rate,
                "drain_s": self.drain_s * 2,
            },
        ]


def phases_for(clients: int, quick: bool = False) -> Phases:
    if clients <= 100:
        return Phases(5, 10.0, 10, 100.0, 5.0)
    if clients <= 2_000:
        return Phases(10 if quick else 20, 5.0, 50 if quick else 100, 200.0, 10.0)
    return Phases(3 if quick else 5, 0.5, 6 if quick else 10, 50.0, 20.0)


@contextlib.contextmanager
def serve(
    design: str, bootstrap: str | None
) -> Iterator[tuple[subprocess.Popen[bytes], int, dict[str, Any]]]:
    """Start the server of ``design``; yield (process, port, load-client config part)."""
    if design in ("api", "api_gc_freeze"):
        settings = product.bench_settings(bootstrap or "127.0.0.1:9092")
        from infra.topics import ensure_topics

        ensure_topics(settings)
        command = [PYTHON, "-m", "tests.benchmarks.api_gc"] if design == "api_gc_freeze" else None
        with product.api(settings, SERVER_CORE, name=f"{design}-fanout", command=command) as (
            proc,
            port,
        ):
            token = settings.authority_token.get_secret_value()
            yield (
                proc,
                port,
                {
                    "protocol": "sse",
                    "path": f"/api/stream?token={token}",
                    "trigger": {
                        "kind": "kafka",
                        "bootstrap": settings.kafka_bootstrap,
                        "topic": settings.events_topic,
                        "key": REGION,
                        "template": event_template(),
                    },
                },
            )
        return
    port = free_port()
    with running(
        [PYTHON, "-m", "tests.benchmarks.peers", design, "--port", str(port)], SERVER_CORE
    ) as proc:
        wait_http(port, "/healthz", proc, timeout=30.0)
        yield (
            proc,
            port,
            {
                "protocol": "socketio" if design == "socketio" else "sse",
                "path": "/stream",
                "trigger": {"kind": "http", "path": "/broadcast", "template": peer_template()},
            },
        )


def drive(
    port: int,
    client_cfg: dict[str, Any],
    clients: int,
    phases: list[dict[str, Any]],
    server_pid: int | None,
    timeout_s: float,
    at_go: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], float | None]:
    """Run the load client against ``port``; return its result and KiB per idle connection.
    ``at_go`` is called once every client is connected, just before the phases start."""
    cfg = {
        "host": "127.0.0.1",
        "port": port,
        "clients": clients,
        "phases": phases,
        "connect_timeout_s": 90.0,
        "timeout_s": timeout_s,
        **client_cfg,
    }
    rss0 = settle_rss(server_pid) if server_pid else None
    client = spawn(
        [PYTHON, "-m", "tests.benchmarks.loadclient"],
        CLIENT_CORE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write((json.dumps(cfg) + "\n").encode())
        client.stdin.flush()
        ready = client.stdout.readline().decode().strip()
        if not ready.startswith("READY"):
            raise RuntimeError(f"load client did not get ready: {ready!r}")
        connected = int(ready.split()[1])
        kib = None
        if server_pid and rss0 is not None and connected:
            time.sleep(0.5)
            kib = (settle_rss(server_pid, seconds=3.0) - rss0) / connected / 1024
        if at_go is not None:
            at_go()
        client.stdin.write(b"GO\n")
        client.stdin.flush()
        line = client.stdout.readline().decode()
        if not line:
            raise RuntimeError("load client exited without a result")
        return json.loads(line), kib
    finally:
        stop(client)


def run(
    design: str,
    clients: int,
    bootstrap: str | None,
    quick: bool = False,
    phases: Phases | None = None,
) -> Row:
    label = PEER_LABELS[design]
    if design.startswith("api"):
        why = product.available("api")
        if why:
            return Row.not_measured("fan-out", label, why, clients=clients)
    phases = phases or phases_for(clients, quick)
    try:
        with serve(design, bootstrap) as (proc, port, client_cfg):
            result, kib = drive(
                port, client_cfg, clients, phases.config(), proc.pid, timeout_s=240.0
            )
    except Exception as exc:
        return Row.not_measured("fan-out", label, f"run failed: {exc}", clients=clients)
    return fanout_row(label, clients, result, kib)


def fanout_row(label: str, clients: int, result: dict[str, Any], kib: float | None) -> Row:
    reach = result["phases"]["reach"]
    burst = result["phases"]["burst"]
    metrics = {
        "connected": result["connected"],
        "connect_s": result["connect_s"],
        "deliveries/s": burst["deliveries_per_s"],
        "burst delivered %": 100.0 * burst["delivered"] / max(1, burst["expected"]),
        "reach 95% ms": reach["reach95_ms_median"],
        "reach all ms": reach["reach_all_ms_median"],
        "p50 ms": reach["p50_ms"],
        "p99 ms": reach["p99_ms"],
        "p99.9 ms": reach["p999_ms"],
        "KiB/idle conn": kib,
    }
    notes = []
    if result["connected"] < clients:
        notes.append(f"only {result['connected']} of {clients} connected")
    if result.get("trigger_failure_count"):
        notes.append(
            f"{result['trigger_failure_count']} trigger failures {result['trigger_failures'][:1]}"
        )
    if reach["incomplete_broadcasts"]:
        notes.append(f"{reach['incomplete_broadcasts']} reach broadcasts not seen by all")
    return Row("fan-out", label, {"clients": clients}, metrics, "; ".join(notes))
