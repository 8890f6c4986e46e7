"""``dispatchwire run``: Kafka and every part of the pipeline together, for ``make run``.

Each part runs as its own process (``dispatchwire worker``, ``api``, ``sink``,
``simulate``), in its own process group, so Ctrl-C stops them in order and a part that
dies takes the others down with a clear message instead of leaving a half-running system.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from dispatchwire.settings import Settings
from infra.cluster import LocalCluster, cluster_from_settings, wants_cluster
from infra.kafka import LocalBroker, broker_from_settings, port_answers
from infra.topics import ensure_topics

log = logging.getLogger(__name__)


@dataclass
class Part:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dispatchwire", *self.argv],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="start Kafka and the whole pipeline with demo traffic")
    run.add_argument("--no-simulate", action="store_true", help="no demo traffic")
    run.add_argument("--rate", type=float, default=0.2, help="demo reports per second")
    run.add_argument("--brokers", type=int, default=None, metavar="N",
                     help="Kafka nodes to start on loopback (as `kafka up --brokers N`)")
    run.set_defaults(func=run_all)


def _parts(settings: Settings, args: argparse.Namespace, available: set[str]) -> list[Part]:
    wanted = [
        Part("worker", ["worker"]),
        Part("api", ["api"]),
        Part("sink", ["sink"]),
    ]
    if not args.no_simulate:
        wanted.append(Part("simulator", ["simulate", "--rate", str(args.rate), "--auto"]))
    missing = [p.name for p in wanted if p.argv[0] not in available]
    if missing:
        log.warning("not built yet, not started: %s", ", ".join(missing))
    return [p for p in wanted if p.argv[0] in available]


def run_all(settings: Settings, args: argparse.Namespace) -> int:
    from dispatchwire.cli import subcommands

    available = subcommands()
    if args.brokers is not None and args.brokers > 1:
        # every part (own processes, reading the environment) sees the same cluster size,
        # so topics and Faust's changelog get its replication factor
        os.environ["DISPATCHWIRE_KAFKA_BROKERS"] = str(args.brokers)
        settings = Settings()
    broker: LocalBroker | LocalCluster = broker_from_settings(settings)
    host, port = broker.host, broker.port
    if wants_cluster(settings, args.brokers):
        broker = cluster_from_settings(settings, args.brokers or settings.kafka_brokers)
        os.environ["DISPATCHWIRE_KAFKA_BOOTSTRAP"] = broker.bootstrap
        settings = Settings()
    started_kafka = False
    if not port_answers(host, port):
        broker.start()
        started_kafka = True
    ensure_topics(settings)
    if "seed" in available:
        subprocess.run([sys.executable, "-m", "dispatchwire", "seed"], check=True)

    parts = _parts(settings, args, available)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    try:
        for part in parts:
            part.start()
        print(
            f"\n  dispatchwire is running.\n"
            f"  Dashboard:   http://{settings.api_host}:{settings.api_port}/\n"
            f"  Reporter:    http://{settings.api_host}:{settings.api_port}/report\n"
            f"  Units map:   http://{settings.api_host}:{settings.api_port}/units\n"
            f"  Kafka:       {settings.kafka_bootstrap}\n"
            f"  Authority token (dev): {settings.authority_token.get_secret_value()}\n"
            f"  Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        while not stopping:
            dead = [p for p in parts if not p.alive()]
            if dead:
                for p in dead:
                    rc = p.proc.returncode if p.proc else None
                    print(f"dispatchwire: {p.name} exited with code {rc}; stopping the rest",
                          file=sys.stderr)
                code = 1
                break
            time.sleep(0.5)
    finally:
        for part in reversed(parts):
            part.stop()
        if started_kafka:
            broker.stop()
        print("dispatchwire stopped.", flush=True)
    return code
