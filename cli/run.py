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

from dispatchwire.settings import DEV_TOKENS, Settings
from infra.cluster import LocalCluster, cluster_from_settings, wants_cluster
from infra.kafka import LocalBroker, broker_from_settings, port_answers
from infra.topics import ensure_topics, wait_for_group_coordinators

log = logging.getLogger(__name__)


@dataclass
class Part:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of this process's environment
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dispatchwire", *self.argv],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env} if self.env else None,
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
    run.add_argument(
        "--rate",
        type=float,
        default=None,
        help="demo reports per second (default: what the seeded fleet can serve)",
    )
    run.add_argument(
        "--brokers",
        type=int,
        default=None,
        metavar="N",
        help="Kafka nodes to start on loopback (as `kafka up --brokers N`)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="workers in one consumer group (web ports counted up from "
        "DISPATCHWIRE_WORKER_WEB_PORT)",
    )
    run.add_argument(
        "--apis",
        type=int,
        default=1,
        metavar="N",
        help="API replicas on consecutive ports from DISPATCHWIRE_API_PORT",
    )
    run.set_defaults(func=run_all)


def _parts(settings: Settings, args: argparse.Namespace, available: set[str]) -> list[Part]:
    workers, apis = settings.workers, max(args.apis, 1)
    web = settings.worker_web_port
    # each worker's introspection server on its own port (0 keeps them all off)
    wanted = [
        Part(
            f"worker-{i + 1}" if workers > 1 else "worker",
            ["worker"],
            env={"DISPATCHWIRE_WORKER_WEB_PORT": str(web + i if web else 0)},
        )
        for i in range(workers)
    ]
    wanted += [
        Part(f"api-{i + 1}" if apis > 1 else "api", ["api", "--port", str(settings.api_port + i)])
        for i in range(apis)
    ]
    wanted.append(Part("sink", ["sink"]))
    if not args.no_simulate:
        rate = [] if args.rate is None else ["--rate", str(args.rate)]
        wanted.append(Part("simulator", ["simulate", *rate, "--auto"]))
    missing = [p.name for p in wanted if p.argv[0] not in available]
    if missing:
        log.warning("not built yet, not started: %s", ", ".join(missing))
    return [p for p in wanted if p.argv[0] in available]


def banner(settings: Settings, apis: int = 1) -> str:
    """What ``run`` prints once everything started. The authority token only when it is the
    public development default: a real secret never goes to stdout (or a terminal log)."""
    base = f"http://{settings.api_host}:{settings.api_port}"
    token = settings.authority_token.get_secret_value()
    if settings.mode == "dev" and token == DEV_TOKENS["authority_token"]:
        login_hint = f"  Authority token (dev): {token}\n"
    else:
        login_hint = "  Authority token: the one in DISPATCHWIRE_AUTHORITY_TOKEN\n"
    return (
        f"\n  dispatchwire is running.\n"
        f"  Dashboard:   {base}/\n"
        f"  Reporter:    {base}/report\n"
        f"  Units map:   {base}/units\n"
        f"  Kafka:       {settings.kafka_bootstrap}\n"
        + (
            f"  API replicas: ports {settings.api_port}-{settings.api_port + apis - 1}, "
            f"{settings.workers} worker(s)\n"
            if apis > 1 or settings.workers > 1
            else ""
        )
        + f"{login_hint}"
        f"  Press Ctrl-C to stop everything.\n"
    )


def run_all(settings: Settings, args: argparse.Namespace) -> int:
    from cli.main import subcommands  # here, not at the top: cli.main imports this module

    available = subcommands()
    if args.brokers is not None and args.brokers > 1:
        # every part (own processes, reading the environment) sees the same cluster size,
        # so topics and Faust's changelog get its replication factor
        os.environ["DISPATCHWIRE_KAFKA_BROKERS"] = str(args.brokers)
        settings = Settings()
    if args.workers is not None:
        if args.workers < 1:
            print("dispatchwire run: --workers must be at least 1", file=sys.stderr)
            return 2
        # every part sees the group's size (the banner reads it; parts start one worker each)
        os.environ["DISPATCHWIRE_WORKERS"] = str(args.workers)
        settings = Settings()
    single = broker_from_settings(settings)
    host, port = single.host, single.port
    broker: LocalBroker | LocalCluster = single
    if wants_cluster(settings, args.brokers):
        broker = cluster_from_settings(settings, args.brokers or settings.kafka_brokers)
        os.environ["DISPATCHWIRE_KAFKA_BOOTSTRAP"] = broker.bootstrap
        settings = Settings()
    started_kafka = False
    if not port_answers(host, port):
        broker.start()
        started_kafka = True
    ensure_topics(settings)
    # the worker's and the sink's consumer groups; asked before they start (start-up noise)
    waited = wait_for_group_coordinators(settings, [settings.app_id, f"{settings.app_id}-sink"])
    log.debug("group coordinator ready after %.1fs", waited)
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
        print(banner(settings, max(args.apis, 1)), flush=True)
        while not stopping:
            dead = [p for p in parts if not p.alive()]
            if dead:
                for p in dead:
                    rc = p.proc.returncode if p.proc else None
                    print(
                        f"dispatchwire: {p.name} exited with code {rc}; stopping the rest",
                        file=sys.stderr,
                    )
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
