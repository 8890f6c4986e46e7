"""``make bench``: latency, fan-out, memory and throughput, each beside its peer.

    python -m tests.benchmarks [--quick] [--only NAME[,NAME]] [--out DIR]

NAMEs: floor, e2e (with each report traced hop by hop, ``e2e hops``), fanout, faust, sink,
replay, scale (issue 14: workers, takeover, failover), fleet (issue 16: 1,000 units at 1 Hz,
reports, 1,000 SSE clients), year (issue 16: a compressed year of traffic, on a broker of
its own). Prints
markdown tables and the
targets of issues 7 and 16 (met / missed / not measured) and writes
``bench-results/bench-<time>.json`` (and ``latest.json``). Uses the broker at
DISPATCHWIRE_KAFKA_BOOTSTRAP (default 127.0.0.1:9092), or starts a local one for the run
if nothing answers there.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dispatchwire.settings import Settings
from tests.benchmarks import (
    e2e,
    fanout,
    fleet,
    kafka_floor,
    mutual_aid,
    scale,
    streams_bench,
    throughput,
    year,
)
from tests.benchmarks.procs import ROOT, cores, own_broker
from tests.benchmarks.report import Row, table, write

NAMES = ("floor", "e2e", "fanout", "faust", "sink", "replay", "scale", "fleet", "year", "mutual")
log = logging.getLogger("tests.benchmarks")


@contextlib.contextmanager
def broker(bootstrap: str) -> Iterator[str]:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0):
            yield bootstrap
            return
    except OSError:
        pass
    print(f"nothing answers at {bootstrap}; starting a broker for this run")
    with own_broker() as local:
        yield local.bootstrap


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "fanout_clients": [1_000],
            "e2e_clients": [100, 1_000],
            "e2e_reports": 50,
            "floor_events": 1_000,
            "faust_commands": 5_000,
            "sink_events": 20_000,
            "rowwise_events": 2_000,
            "replay_events": 200_000,
            "emit_cap": 20_000,
            "scale_commands": 5_000,
            "scale_backlog": 2_000,
            "fleet": (100, 200, 20),  # SSE clients, units, measured reports (at 1/s)
            "year_days": 30,  # issue 16: a compressed month instead of the year
            "year_per_day": 1_000,
            "mutual_dispatches": 30,
        }
    return {
        "fanout_clients": [1_000, 10_000],
        "e2e_clients": [100, 1_000],
        "e2e_reports": 100,
        "floor_events": 2_000,
        "faust_commands": 20_000,
        "sink_events": 100_000,
        "rowwise_events": 5_000,
        "replay_events": 1_000_000,
        "emit_cap": 50_000,
        "scale_commands": 20_000,
        "scale_backlog": 10_000,
        "fleet": (1_000, 1_000, 60),
        "year_days": 365,
        "year_per_day": 1_000,
        "mutual_dispatches": 200,
    }


def run(names: list[str], quick: bool, bootstrap: str) -> list[Row]:
    n = sizes(quick)
    rows: list[Row] = []

    def section(name: str) -> bool:
        if name in names:
            print(f"-- {name} ({time.strftime('%H:%M:%S')})", flush=True)
            return True
        return False

    if section("floor"):
        rows.append(kafka_floor.run(bootstrap, n["floor_events"], 200.0))
    if section("e2e"):
        rows += e2e.run(bootstrap, n["e2e_clients"], 10.0, n["e2e_reports"])
    if section("fanout"):
        for clients in n["fanout_clients"]:
            for design in ("socketio", "naive_sse", "encode_once", "api"):
                rows.append(fanout.run(design, clients, bootstrap, quick))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    if section("faust"):
        rows += streams_bench.run(bootstrap, n["faust_commands"])
    if section("sink") or section("replay"):
        rows += throughput.run(
            bootstrap,
            n["replay_events"],
            n["sink_events"],
            n["rowwise_events"],
            n["emit_cap"],
            want_replay="replay" in names,
            want_sink="sink" in names,
        )
    if section("scale"):
        rows += scale.run(bootstrap, n["scale_commands"], n["scale_backlog"])
    if section("fleet"):
        clients, units, reports = n["fleet"]
        rows += fleet.run(bootstrap, clients, units, 200.0, reports)
    if section("year"):
        rows += year.run(n["year_days"], n["year_per_day"])  # on a broker of its own
    if section("mutual"):
        rows += mutual_aid.run(bootstrap, n["mutual_dispatches"])
    return rows


def _metric(
    rows: list[Row], bench: str, subject_part: str, metric: str, **params: Any
) -> float | None:
    for r in rows:
        if (
            r.bench == bench
            and subject_part in r.subject
            and all(r.params.get(k) == v for k, v in params.items())
        ):
            value = r.metrics.get(metric)
            if isinstance(value, (int, float)):
                return float(value)
    return None


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    """The targets of issues 7 and 16 against this run's figures."""
    out = []

    def check(name: str, value: float | None, ok: Callable[[float], bool], detail: str) -> None:
        """``ok(value)`` met or missed; no value, not measured (``ok`` is not called)."""
        status = "not measured" if value is None else ("met" if ok(value) else "missed")
        out.append({"target": name, "status": status, "value": value, "detail": detail})

    p99 = _metric(rows, "e2e latency", "", "p99 ms", clients=1_000)
    check("e2e p99 <= 60 ms at 1,000 clients", p99, lambda v: v <= 60, f"p99 {p99} ms")
    p50 = _metric(rows, "e2e latency", "", "p50 ms", clients=1_000)
    check("e2e p50 <= 15 ms at 1,000 clients (issue 16)", p50, lambda v: v <= 15, f"p50 {p50} ms")
    check("e2e p99 <= 40 ms at 1,000 clients (issue 16)", p99, lambda v: v <= 40, f"p99 {p99} ms")
    api = _metric(rows, "fan-out", "dispatchwire", "deliveries/s", clients=1_000)
    sio = _metric(rows, "fan-out", "socketio", "deliveries/s", clients=1_000)
    once = _metric(rows, "fan-out", "encode-once", "deliveries/s", clients=1_000)
    ratio = api / sio if api and sio else None
    check(
        "fan-out at 1,000 >= 5x python-socketio",
        ratio,
        lambda v: v >= 5,
        f"{ratio and round(ratio, 2)}x",
    )
    ratio_c = api / once if api and once else None
    check(
        "fan-out at 1,000 >= bare encode-once",
        ratio_c,
        lambda v: v >= 1.0,
        f"{ratio_c and round(ratio_c, 2)}x",
    )
    reach = _metric(rows, "fan-out", "dispatchwire", "reach all ms", clients=10_000)
    check("broadcast reaches all 10,000 within 300 ms", reach, lambda v: v <= 300, f"{reach} ms")
    kib = _metric(rows, "fan-out", "dispatchwire", "KiB/idle conn", clients=10_000)
    check(
        "<= 25 KiB per idle connection (10,000)",
        kib,
        lambda v: v <= 25,
        f"{kib and round(kib, 1)} KiB",
    )
    faust = _metric(rows, "commands agent", "Faust", "events/s")
    raw = _metric(rows, "commands agent", "raw aiokafka", "events/s")
    share = faust / raw if faust and raw else None
    check(
        "Faust >= 50 % of the raw loop", share, lambda v: v >= 0.5, f"{share and round(share, 2)}"
    )
    check("Faust >= 10,000 events/s", faust, lambda v: v >= 10_000, f"{faust and round(faust)}/s")
    sink = _metric(rows, "sink ingest", "Kafka -> DuckDB", "events/s")
    check("sink >= 200,000 events/s", sink, lambda v: v >= 200_000, f"{sink and round(sink)}/s")
    replay = _metric(rows, "replay", "", "re-emit events/s")
    check(
        "replay >= 50,000 events/s",
        replay,
        lambda v: v >= 50_000,
        f"{replay and round(replay)}/s (re-emit)",
    )
    fleet_p99 = _metric(rows, "fleet", "", "p99 ms", clients=1_000)
    check(
        "fleet: report p99 <= 100 ms at 1,000 clients, 1,000 units",
        fleet_p99,
        lambda v: v <= 100,
        f"p99 {fleet_p99} ms",
    )
    stale = _metric(rows, "fleet", "", "staleness p99 ms", clients=1_000)
    check("fleet: position staleness p99 <= 1 s", stale, lambda v: v <= 1_000, f"p99 {stale} ms")
    # issue 16: every figure after the year (or --quick's month) within 2x of after a day
    years = [r for r in rows if r.bench == "compressed year"]
    day = next((r for r in years if r.subject == "after 1 day"), None)
    end = next((r for r in reversed(years) if r.subject != "after 1 day"), None)
    for metric in year.BOUNDED:
        first = day.metrics.get(metric) if day else None
        last = end.metrics.get(metric) if end else None
        ratio = last / first if first and last is not None else None
        check(
            f"compressed year: {metric} within 2x of after one day",
            ratio,
            lambda v: v <= 2.0,
            f"{first} -> {last} ({ratio and round(ratio, 2)}x)",
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, 1,000 clients only")
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        help=f"run only these ({', '.join(NAMES)}); repeat or comma-separate",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("BENCH_LOG", "WARNING"))
    names = list(NAMES)
    if args.only:
        names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = sorted(set(names) - set(NAMES))
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(NAMES)}")
    if len(cores()) < 2:
        print("note: fewer than 2 cores available; server and client share a core")
    started = time.monotonic()
    with broker(Settings().kafka_bootstrap) as bootstrap:
        try:
            rows = run(names, args.quick, bootstrap)
        finally:
            # worker and sink data of this run (Faust data dirs, DuckDB files)
            shutil.rmtree(ROOT / "bench-results" / "data", ignore_errors=True)
    checks = targets(rows)
    print(table(rows))
    print("\n### targets (issues 7, 16)\n")
    for c in checks:
        print(f"- {c['status']:>12}: {c['target']} ({c['detail']})")
    path = write(
        rows,
        checks,
        args.out,
        {"quick": args.quick, "only": names, "seconds": round(time.monotonic() - started, 1)},
    )
    print(
        f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
        f"in {time.monotonic() - started:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
