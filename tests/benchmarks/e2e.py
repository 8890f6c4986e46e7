"""End-to-end latency: ``POST /api/emergencies`` -> ``emergency_created`` at every SSE client.

The real worker and the real API run as processes on the server core; the load client
(other core) holds N SSE connections and reports at a fixed offered rate (open loop). A
report's latency to one client is from just before its POST leaves the load client to the
moment its event's bytes arrive on that client's socket.
"""

from __future__ import annotations

import json
import time

import httpx

from tests.benchmarks import product
from tests.benchmarks.fanout import drive
from tests.benchmarks.procs import SERVER_CORE
from tests.benchmarks.report import Row

SUBJECT = "HTTP report -> every SSE client (worker + API)"


def report_template() -> str:
    return json.dumps(
        {
            "command_id": "@@SEQ@@",
            "type": "medical",
            "priority": 2,
            "lat": 60.1699,
            "lon": 24.9384,
            "description": "Person collapsed at the tram stop, breathing @@MARK@@",
            "reporter": {"name": "Bench Reporter", "phone": "+358 40 123 4567"},
        }
    )


def wait_worker_ready(port: int, proc: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # type: ignore[attr-defined]
            raise RuntimeError("the worker exited; see bench-results/logs/worker-e2e.log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/dispatch/ready/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the worker did not own its partitions in time")


def run(bootstrap: str, client_counts: list[int], rate: float, count: int) -> list[Row]:
    why = product.available("api") or product.available("worker")
    if why:
        return [Row.not_measured("e2e latency", SUBJECT, why, clients=n) for n in client_counts]
    rows = []
    try:
        settings = product.bench_settings(bootstrap)
        from infra.topics import ensure_topics

        ensure_topics(settings)
        with product.worker(settings, SERVER_CORE, name="worker-e2e") as worker_proc:
            wait_worker_ready(settings.worker_web_port, worker_proc)
            with product.api(settings, SERVER_CORE, name="api-e2e") as (_api_proc, port):
                token = settings.authority_token.get_secret_value()
                for clients in client_counts:
                    phases = [
                        # not measured: the first reports warm up the worker, API and broker
                        {"name": "warmup", "count": 3, "rate": 2.0, "drain_s": 30.0},
                        {"name": "reach", "count": count, "rate": rate, "drain_s": 15.0},
                    ]
                    cfg = {
                        "protocol": "sse",
                        "path": f"/api/stream?token={token}",
                        "trigger": {
                            "kind": "http",
                            "path": "/api/emergencies",
                            "template": report_template(),
                        },
                    }
                    result, _ = drive(port, cfg, clients, phases, None, timeout_s=180.0)
                    rows.append(_row(clients, rate, result))
    except Exception as exc:
        done = {r.params["clients"] for r in rows}
        rows += [
            Row.not_measured("e2e latency", SUBJECT, f"run failed: {exc}", clients=n)
            for n in client_counts
            if n not in done
        ]
    return rows


def _row(clients: int, rate: float, result: dict) -> Row:
    reach = result["phases"]["reach"]
    notes = []
    if result["connected"] < clients:
        notes.append(f"only {result['connected']} of {clients} connected")
    if result.get("trigger_failure_count"):
        notes.append(
            f"{result['trigger_failure_count']} reports failed {result['trigger_failures'][:1]}"
        )
    if reach["incomplete_broadcasts"]:
        notes.append(f"{reach['incomplete_broadcasts']} reports not seen by every client")
    return Row(
        "e2e latency",
        SUBJECT,
        {"clients": clients, "reports/s": rate},
        {
            "reports": reach["broadcasts"],
            "delivered %": 100.0 * reach["delivered"] / max(1, reach["expected"]),
            "p50 ms": reach["p50_ms"],
            "p99 ms": reach["p99_ms"],
            "p99.9 ms": reach["p999_ms"],
            "reach all ms": reach["reach_all_ms_median"],
        },
        "; ".join(notes),
    )
