"""A city's fleet moving (issue 16, part 2): reports reach every dashboard while 1,000 units
send a position a second and 1,000 SSE clients watch.

The real worker and API run on the server core; ``dispatchwire simulate --units N --auto
--rate R`` (the fleet, R reports a second with dispatches and completions) and the load
client (``loadclient``: N SSE connections, reports by HTTP at 1/s, marker latency) run on
the client core. Beside them, a few probe SSE clients in this process read every frame:

- ``p99 ms``: report POST -> its ``emergency_created`` at every load client (``loadclient``);
- ``staleness p99 ms``: a probe receiving a unit's position, minus the Kafka timestamp of
  the GPS fix command it came from (the simulator's send): the age of what a map shows;
- ``worker lag p99 ms``: that command's timestamp -> its ``unit_location`` event's;
- ``API staleness p99 ms``: the event's timestamp -> a probe receiving it (the read model,
  the frame interval and the write: what conflation itself adds);
- ``B/client/s``: the bytes a probe received per second (every client gets the same);
- ``worker CPU %`` / ``API CPU %``: of one core, over the measured window (``/proc``);
  ``simulator CPU %`` the same of the fleet's simulator (on the client core: it is the
  traffic, not the system, but it shares the machine);
- ``worker CPU wait %``: the time the worker's threads were runnable but waited for a CPU
  (``/proc/<pid>/task/*/schedstat``), over the window: a worker that falls behind with a
  low CPU % and a high wait % is starved of the core, not waiting on anything of its own;
  ``API CPU wait %`` the same of the API (a report's HTTP-in and fold hops wait there);
- ``fixes offered/s``: GPS fix commands in the log stamped within the window (what the
  simulator really sent), beside ``positions/s`` (what the worker made of them);
- ``deliveries/s``: the API's ``dispatchwire_api_messages_fanned_out`` over the window;
- ``batch``: the worker's batches over the window (``/dispatch/batches/``): commands per
  batch, and per batch the ms spent deciding its commands, writing its table entries until
  the broker acknowledged them, and publishing its events; ``slowest decide ms`` is the
  longest single decision of the run (a dispatch, which every later command waits for).

Beside the row, ``fleet hops``: each measured report traced through its hops as the e2e
bench does (``tests.benchmarks.e2e.Watch``, ``hop_rows``: the command's and the event's
CreateTime, when a watching consumer got each, the first, median and last client), so the
rows say which hop holds the p99 while the fleet moves; ``fleet slowest``: the three reports
slowest to their median client, hop by hop (``e2e.slowest_rows``), since with 60 reports the
p99 of the receipts falls inside the slowest report's own fan-out.

Completions come ``ON_SCENE_S`` (60-150 s) after arrival, so only the later part of a
minute-long window has them; dispatches start within seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from dispatchwire.settings import Settings
from schemas.live import frame_positions
from tests.benchmarks import product
from tests.benchmarks.e2e import Watch, hop_rows, report_load, slowest_rows, wait_worker_ready
from tests.benchmarks.fanout import drive
from tests.benchmarks.loadclient import percentile
from tests.benchmarks.procs import CLIENT_CORE, SERVER_CORE, cpu_seconds, running
from tests.benchmarks.report import Row
from tests.conftest import wait_for

BENCH = "fleet"
SUBJECT = "1 Hz fleet + reports -> SSE dashboards (conflated)"
PROBES = 3
FANNED = re.compile(rb"^dispatchwire_api_messages_fanned_out_total (\S+)$", re.M)


class Probe(threading.Thread):
    """One SSE client in a thread: bytes received, and when each (unit, version) came."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.bytes = 0
        self.seen: dict[tuple[str, int], float] = {}  # (unit id, version) -> wall time
        self.counting = False
        self.stopped = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(30.0)) as response:
                rest = b""
                for chunk in response.iter_raw():
                    if self.stopped.is_set():
                        return
                    received = time.time()
                    if self.counting:
                        self.bytes += len(chunk)
                    *blocks, rest = (rest + chunk).split(b"\r\n\r\n")
                    for block in blocks:
                        if self.counting and b"event: unit_locations\r\n" in block:
                            self._frame(block, received)
        except Exception as exc:  # a probe that fails says why in the row
            if not self.stopped.is_set():
                self.error = repr(exc)

    def _frame(self, block: bytes, received: float) -> None:
        data = block.split(b"\r\ndata: ", 1)[1]
        for unit in frame_positions(json.loads(data)):
            self.seen.setdefault((unit["unit_id"], unit["version"]), received)


def _fanned_out(port: int) -> float:
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).content
    match = FANNED.search(body)
    return float(match.group(1)) if match else 0.0


def _wait_fleet(port: int, token: str, units: int, timeout_s: float = 120.0) -> None:
    """Until the read model holds the whole fleet (the simulator registers it first)."""

    def whole() -> bool:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            url, auth = f"http://127.0.0.1:{port}/api/units", f"Bearer {token}"
            return len(httpx.get(url, headers={"Authorization": auth}, timeout=10).json()) >= units
        return False

    wait_for(whole, timeout=timeout_s, interval=0.5, message=f"the fleet of {units} in the API")


def _timestamps(
    settings: Settings,
) -> tuple[dict[str, int], dict[tuple[str, int], tuple[str, int]]]:
    """GPS fix command id -> its Kafka timestamp; (unit, version) -> (command id, event
    timestamp) of every ``unit_location``."""
    from infra.clients import consumer as kafka_consumer

    def read(topic: str) -> list[Any]:
        consumer = kafka_consumer(
            settings,
            topic,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=10_000,
            consumer_timeout_ms=5_000,
        )
        try:
            return list(consumer)
        finally:
            consumer.close()

    commands: dict[str, int] = {}
    for record in read(settings.commands_topic):
        if b'"kind":"unit_position"' in record.value:
            commands[json.loads(record.value)["command_id"]] = record.timestamp
    events = {}
    for record in read(settings.events_topic):
        if b'"event":"unit_location"' in record.value:
            body = json.loads(record.value)
            events[(body["unit_id"], body["version"])] = (body["command_id"], record.timestamp)
    return commands, events


def run(
    bootstrap: str, clients: int, units: int, reports_per_min: float, reports: int
) -> list[Row]:
    """The ``fleet`` row and its ``fleet hops`` rows."""
    params = {"clients": clients, "units": units, "reports/min": reports_per_min}
    why = product.available("simulate") or product.available("api")
    if why:
        return [Row.not_measured(BENCH, SUBJECT, why, **params)]
    try:
        return _run(bootstrap, clients, units, reports_per_min, reports, params)
    except Exception as exc:
        return [Row.not_measured(BENCH, SUBJECT, f"run failed: {exc!r}", **params)]


def _run(
    bootstrap: str,
    clients: int,
    units: int,
    reports_per_min: float,
    reports: int,
    params: dict[str, Any],
) -> list[Row]:
    from infra.topics import ensure_topics
    from streams.seed import seed

    load0 = os.getloadavg()

    settings = product.bench_settings(bootstrap, client_queue_size=2_000)
    ensure_topics(settings)
    token = settings.authority_token.get_secret_value()
    simulate = [
        product.DISPATCHWIRE,
        "simulate",
        "--units",
        str(units),
        "--auto",
        "--rate",
        str(reports_per_min / 60),
        "--seed",
        "16",
    ]
    with product.worker(settings, SERVER_CORE, name="worker-fleet") as worker_proc:
        wait_worker_ready(settings.worker_web_port, worker_proc)
        seed(settings)
        with (
            product.api(settings, SERVER_CORE, name="api-fleet") as (api_proc, port),
            running(
                simulate,
                CLIENT_CORE,
                env=product.env_for(settings),
                log=product.LOG_DIR / "simulate-fleet.log",
            ) as simulate_proc,
        ):
            stream = f"http://127.0.0.1:{port}/api/stream?token={token}"
            probes = [Probe(stream) for _ in range(PROBES)]
            for probe in probes:
                probe.start()
            _wait_fleet(port, token, units)
            batches0 = _batches(settings.worker_web_port)
            pids = (worker_proc.pid, api_proc.pid, simulate_proc.pid)
            cpu0 = [cpu_seconds(pid) for pid in pids]
            waited0, wall0 = [run_queue_seconds(pid) for pid in pids[:2]], time.time()
            fanned0, t0 = _fanned_out(port), time.monotonic()
            for probe in probes:
                probe.counting = True
            phases = [
                {"name": "warmup", "count": 3, "rate": 1.0, "drain_s": 20.0},
                {"name": "reach", "count": reports, "rate": 1.0, "drain_s": 20.0, "per_seq": True},
            ]
            tag = uuid.uuid4().hex[:6]
            cfg = {"tag": tag, **report_load(token)}
            with Watch(settings, f"{tag}-") as watch:
                result, _ = drive(port, cfg, clients, phases, None, timeout_s=600.0)
            window = time.monotonic() - t0
            fanned = _fanned_out(port) - fanned0
            cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu0, strict=True)]
            waited = [run_queue_seconds(pid) - w for pid, w in zip(pids[:2], waited0, strict=True)]
            wall1 = time.time()
            batches1 = _batches(settings.worker_web_port)
            for probe in probes:
                probe.counting = False
                probe.stopped.set()
    load = os.getloadavg()
    commands, events = _timestamps(settings)
    staleness, lag, api_staleness = [], [], []
    for probe in probes:
        for key, received in probe.seen.items():
            found = events.get(key)
            if found is None:
                continue
            api_staleness.append(received * 1000 - found[1])
            if found[0] in commands:
                staleness.append(received * 1000 - commands[found[0]])
    for command_id, event_ts in events.values():
        if command_id in commands:
            lag.append(event_ts - commands[command_id])
    for values in (staleness, lag, api_staleness):
        values.sort()
    offered = sum(1 for ts in commands.values() if wall0 * 1000 <= ts <= wall1 * 1000)
    reach = result["phases"]["reach"]
    notes = [f"load average (1 min) {load0[0]:.1f} before, {load[0]:.1f} after the run"]
    if result["connected"] < clients:
        notes.append(f"only {result['connected']} of {clients} connected")
    if reach["incomplete_broadcasts"]:
        notes.append(f"{reach['incomplete_broadcasts']} reports not seen by every client")
    notes += [f"probe: {p.error}" for p in probes if p.error]
    row = Row(
        BENCH,
        SUBJECT,
        params,
        {
            "p50 ms": reach["p50_ms"],
            "p99 ms": reach["p99_ms"],
            "staleness p50 ms": percentile(staleness, 0.5),
            "staleness p99 ms": percentile(staleness, 0.99),
            "worker lag p99 ms": percentile(lag, 0.99),
            "API staleness p99 ms": percentile(api_staleness, 0.99),
            "worker CPU %": round(100 * cpu[0] / window, 1),
            "worker CPU wait %": round(100 * waited[0] / window, 1),
            "API CPU %": round(100 * cpu[1] / window, 1),
            "API CPU wait %": round(100 * waited[1] / window, 1),
            "simulator CPU %": round(100 * cpu[2] / window, 1),
            "deliveries/s": round(fanned / window),
            "B/client/s": round(sum(p.bytes for p in probes) / len(probes) / window),
            "fixes offered/s": round(offered / window),
            "positions/s": round(len(lag) / max(1.0, _span_s(events))),
            **_batch_metrics(batches0, batches1, window),
        },
        "; ".join(notes),
    )
    hops = [
        Row("fleet hops", hop.subject, params, hop.metrics, hop.note)
        for hop in hop_rows(clients, 1, result, watch.seen)
    ]
    slowest = slowest_rows("fleet slowest", params, result, watch.seen)
    return [row, *hops, *slowest]


def _batches(port: int) -> dict[str, Any]:
    return dict(httpx.get(f"http://127.0.0.1:{port}/dispatch/batches/", timeout=10).json())


def _batch_metrics(
    before: dict[str, Any], after: dict[str, Any], window_s: float
) -> dict[str, Any]:
    """The worker's batching over the window: commands per batch, ms per batch in each
    phase (``streams.processing.BatchProcessor.counts``)."""
    batches = after["batches"] - before["batches"]
    if batches <= 0 or "decide_s" not in after:
        return {}
    per_batch = {
        name: round(1000 * (after[f"{name}_s"] - before[f"{name}_s"]) / batches, 2)
        for name in ("decide", "changelog", "publish")
    }
    gc_s = [a - b for a, b in zip(after.get("gc_s", ()), before.get("gc_s", ()), strict=False)]
    gc_counts = [
        a - b for a, b in zip(after.get("gc_counts", ()), before.get("gc_counts", ()), strict=False)
    ]
    return {
        "batch commands": round((after["commands"] - before["commands"]) / batches, 1),
        "batch decide ms": per_batch["decide"],
        "batch changelog+ack ms": per_batch["changelog"],
        "batch publish ms": per_batch["publish"],
        "slowest decide ms": round(1000 * after["slowest_decide_s"], 1),
        "worker gc ms/s (gen 0/1/2)": "/".join(f"{1000 * g / window_s:.1f}" for g in gc_s)
        if gc_s
        else None,
        "worker gen2 gcs": gc_counts[2] if len(gc_counts) > 2 else None,
        "worker gc longest ms": round(1000 * after["gc_longest_s"], 1)
        if "gc_longest_s" in after
        else None,
    }


def _span_s(events: dict[tuple[str, int], tuple[str, int]]) -> float:
    stamps = [ts for _, ts in events.values()]
    return (max(stamps) - min(stamps)) / 1000 if stamps else 0.0


def run_queue_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` have spent runnable but waiting for a CPU (the second
    field of each ``/proc/<pid>/task/<tid>/schedstat``; a thread gone meanwhile drops out)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9
