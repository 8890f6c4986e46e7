"""End-to-end latency: ``POST /api/emergencies`` -> ``emergency_created`` at every SSE client.

The real worker and the real API run as processes on the server core; the load client
(other core) holds N SSE connections and reports at a fixed offered rate (open loop). A
report's latency to one client is from just before its POST leaves the load client to the
moment its event's bytes arrive on that client's socket.

Beside the totals, each report is traced through its hops (``e2e hops``) from timestamps
the pipeline already has, with nothing added to its hot path: the POST's send time (load
client), the command record's CreateTime (set by the API's producer as it sends), the moment
a watching consumer of ``dispatch.commands`` gets the command (bench process), the event
record's CreateTime (set by the worker's producer), the moment a watching consumer of
``dispatch.events`` gets the event (as the API's read model could at the earliest), and
the first, median and last client's receipt. Record timestamps have millisecond
resolution (taken as the middle of their millisecond); the watchers share the loaded
machine, so a hop's edge is "fetchable by a consumer", not the broker's append.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from subprocess import Popen
from typing import Any

from dispatchwire.settings import Settings
from tests.benchmarks import product
from tests.benchmarks.fanout import drive
from tests.benchmarks.loadclient import percentile
from tests.benchmarks.procs import SERVER_CORE, cpu_seconds, wait_http
from tests.benchmarks.report import Row

SUBJECT = "HTTP report -> every SSE client (worker + API)"
# (label, from, to): the edges are the times each report has (see the module docstring)
HOPS: tuple[tuple[str, str, str], ...] = (
    ("API: HTTP in, validate, produce", "sent", "command_ts"),
    ("command: produce -> fetchable", "command_ts", "command_seen"),
    ("worker: fetch, batch, decide, produce", "command_seen", "event_ts"),
    ("event: produce -> fetchable", "event_ts", "event_seen"),
    ("API: fetch, fold, encode, first write", "event_seen", "first"),
    ("fan-out: first -> median client", "first", "median"),
    ("fan-out: first -> last client", "first", "last"),
    ("total to the median client", "sent", "median"),
)


class Watch:
    """Consumers of the commands and events topics in a thread of their own: for each
    command id, when its command and its first event became fetchable (wall clock) and
    their records' CreateTime. One consumer per topic, so neither waits behind the other's
    long poll."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        self.settings = settings
        self.prefix = prefix
        self.seen: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        if not self._ready.wait(60.0):
            raise TimeoutError("the hop watchers did not get positioned")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30.0)

    async def _main(self) -> None:
        from aiokafka import TopicPartition

        from infra.clients import aio_consumer, partitions_of

        consumers = []
        try:
            for topic in (self.settings.commands_topic, self.settings.events_topic):
                consumer = aio_consumer(self.settings, group_id=None, fetch_max_wait_ms=100)
                await consumer.start()
                consumers.append(consumer)
                tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
                consumer.assign(tps)
                await consumer.seek_to_end(*tps)
                for tp in tps:
                    await consumer.position(tp)
            self._ready.set()
            commands, events = consumers
            await asyncio.gather(self._read(commands, "command"), self._read(events, "event"))
        finally:
            for consumer in consumers:
                await consumer.stop()

    async def _read(self, consumer: Any, kind: str) -> None:
        while not self._stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            arrived = time.time()
            for records in batches.values():
                for record in records:
                    command_id = json.loads(record.value).get("command_id", "")
                    if not command_id.startswith(self.prefix):
                        continue
                    hops = self.seen.setdefault(command_id, {})
                    if f"{kind}_seen" not in hops:
                        hops[f"{kind}_seen"] = arrived
                        hops[f"{kind}_ts"] = (record.timestamp + 0.5) / 1000.0


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


def report_load(token: str) -> dict[str, Any]:
    """The load client's config: SSE clients on ``/api/stream``, reports POSTed by HTTP."""
    return {
        "protocol": "sse",
        "path": f"/api/stream?token={token}",
        "trigger": {"kind": "http", "path": "/api/emergencies", "template": report_template()},
    }


def wait_worker_ready(port: int, proc: Popen[bytes], timeout: float = 120.0) -> None:
    """Until the worker owns its partitions (its ``/dispatch/ready/`` answers)."""
    wait_http(port, "/dispatch/ready/", proc, timeout)


def run(
    bootstrap: str, client_counts: list[int], rate: float, count: int, partitions: int = 1
) -> list[Row]:
    """Rows per client count: ``e2e latency`` and its ``e2e hops``. ``partitions`` of the
    commands and events topics (the reports all go to one region, so with more than one
    the others stay idle, as most regions' partitions are between reports)."""
    why = product.available("api") or product.available("worker")
    if why:
        return [Row.not_measured("e2e latency", SUBJECT, why, clients=n) for n in client_counts]
    rows = []
    try:
        settings = product.bench_settings(bootstrap, partitions=partitions)
        from infra.topics import ensure_topics

        ensure_topics(settings)
        with product.worker(settings, SERVER_CORE, name="worker-e2e") as worker_proc:
            wait_worker_ready(settings.worker_web_port, worker_proc)
            with product.api(settings, SERVER_CORE, name="api-e2e") as (api_proc, port):
                pids = {"worker": worker_proc.pid, "API": api_proc.pid}
                cpu: dict[str, float] = {}

                def at_go() -> None:
                    cpu.update({name: -cpu_seconds(pid) for name, pid in pids.items()})

                token = settings.authority_token.get_secret_value()
                for clients in client_counts:
                    phases = [
                        # not measured: the first reports warm up the worker, API and broker
                        {"name": "warmup", "count": 3, "rate": 2.0, "drain_s": 30.0},
                        {"name": "reach", "count": count, "rate": rate, "drain_s": 15.0},
                    ]
                    tag = uuid.uuid4().hex[:6]
                    phases[-1]["per_seq"] = True
                    cfg = {"tag": tag, **report_load(token)}
                    with Watch(settings, f"{tag}-") as watch:
                        result, _ = drive(
                            port, cfg, clients, phases, None, timeout_s=180.0, at_go=at_go
                        )
                    for name, pid in pids.items():
                        cpu[name] += cpu_seconds(pid)
                    rows.append(_row(clients, rate, result, partitions))
                    rows += hop_rows(clients, partitions, result, watch.seen)
                    reports = sum(phase["count"] for phase in phases)
                    rows += cpu_rows(clients, partitions, cpu, reports)
    except Exception as exc:
        done = {r.params["clients"] for r in rows if r.bench == "e2e latency"}
        rows += [
            Row.not_measured(
                "e2e latency", SUBJECT, f"run failed: {exc}", clients=n, partitions=partitions
            )
            for n in client_counts
            if n not in done
        ]
    return rows


def _row(clients: int, rate: float, result: dict, partitions: int = 1) -> Row:
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
        {"clients": clients, "reports/s": rate, "partitions": partitions},
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


def hop_times(result: dict[str, Any], seen: dict[str, dict[str, float]]) -> list[dict[str, float]]:
    """Every measured report's edge times, wall clock in seconds."""
    reach = result["phases"]["reach"]
    offset = result["wall_minus_perf"]
    tag = result["tag"]
    reports = []
    for seq, (sent, first, median, last, _count) in reach["per_seq"].items():
        times = {"sent": sent + offset, "first": first + offset}
        times |= {"median": median + offset, "last": last + offset}
        times |= seen.get(f"{tag}-{seq}", {})
        if all(edge in times for _, a, b in HOPS for edge in (a, b)):
            reports.append(times)
    return reports


def hop_rows(
    clients: int, partitions: int, result: dict[str, Any], seen: dict[str, dict[str, float]]
) -> list[Row]:
    """One row per hop: its median, p99 and mean over the traced reports."""
    reports = hop_times(result, seen)
    broadcasts = result["phases"]["reach"]["broadcasts"]
    note = "" if len(reports) == broadcasts else f"{broadcasts - len(reports)} reports not traced"
    rows = []
    for label, a, b in HOPS:
        spans = sorted(1000.0 * (r[b] - r[a]) for r in reports)
        metrics = {
            "traced": len(spans),
            "p50 ms": percentile(spans, 0.5),
            "p99 ms": percentile(spans, 0.99),
            "mean ms": sum(spans) / len(spans) if spans else None,
        }
        params = {"clients": clients, "partitions": partitions}
        rows.append(Row("e2e hops", label, params, metrics, note))
    return rows


def slowest_rows(
    bench: str,
    params: dict[str, Any],
    result: dict[str, Any],
    seen: dict[str, dict[str, float]],
    n: int = 3,
) -> list[Row]:
    """The ``n`` reports slowest to their median client, each through every hop (``HOPS``),
    and when in the measured phase they were sent: a p99 over a minute of reports is set by
    its few slowest, and whether their time sits in one hop or is spread over all says
    whether one stage stalls or the whole core is busy."""
    reports = hop_times(result, seen)
    if not reports:
        return []
    start = min(r["sent"] for r in reports)
    slowest = sorted(reports, key=lambda r: r["median"] - r["sent"], reverse=True)[:n]
    return [
        Row(
            bench,
            f"slowest report {rank}",
            params,
            {
                "sent at s": round(r["sent"] - start, 1),
                **{f"{label} ms": round(1000.0 * (r[b] - r[a]), 1) for label, a, b in HOPS},
            },
        )
        for rank, r in enumerate(slowest, 1)
    ]


def cpu_rows(clients: int, partitions: int, cpu: dict[str, float], reports: int) -> list[Row]:
    """The work beside the waiting: each process's CPU per report, from connected to done
    (heartbeats and the idle loops included)."""
    return [
        Row(
            "e2e hops",
            f"{name} CPU per report (work, not a hop)",
            {"clients": clients, "partitions": partitions},
            {"traced": reports, "mean ms": 1000.0 * seconds / reports},
        )
        for name, seconds in cpu.items()
    ]
