"""``dispatchwire kafka up|down|status``.

One node with PLAINTEXT is the ``LocalBroker`` it always was; ``--brokers N`` (or
``DISPATCHWIRE_KAFKA_BROKERS``) or SASL settings start a ``LocalCluster``. ``down`` and
``status`` look after both, whichever was started.
"""

from __future__ import annotations

import argparse
import sys

from dispatchwire.errors import ConfigurationError, DispatchwireError
from dispatchwire.settings import Settings
from infra.cluster import cluster_from_settings, scram_login, wants_cluster
from infra.kafka import broker_from_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kafka = sub.add_parser("kafka", help="fetch, start and stop the local Kafka broker")
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True)
    up = kafka_sub.add_parser("up", help="fetch Kafka (cached) and start a KRaft broker")
    up.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the broker(s) (default 90, a cluster 180)",
    )
    up.add_argument(
        "--brokers",
        type=int,
        default=None,
        metavar="N",
        help="KRaft nodes on loopback (default DISPATCHWIRE_KAFKA_BROKERS, 1); "
        "ports from the bootstrap port upwards in steps of two",
    )
    up.set_defaults(func=kafka_up)
    kafka_sub.add_parser("down", help="stop the local broker").set_defaults(func=kafka_down)
    kafka_sub.add_parser("status", help="is the local broker running").set_defaults(
        func=kafka_status
    )
    kafka_sub.add_parser("fetch", help="only fetch the server artifacts").set_defaults(
        func=kafka_fetch
    )


def kafka_up(settings: Settings, args: argparse.Namespace) -> int:
    brokers = getattr(args, "brokers", None)
    if brokers is not None and brokers < 1:
        raise ConfigurationError("--brokers must be 1 or more")
    scram_login(settings)  # refuses security settings a local broker cannot offer
    if wants_cluster(settings, brokers):
        cluster = cluster_from_settings(settings, brokers or settings.kafka_brokers)
        cluster.start(timeout=args.timeout or 180.0)
        print(
            f"Kafka {settings.kafka_version} cluster of {len(cluster.nodes)} nodes is up at "
            f"{cluster.bootstrap} (data: {cluster.data_dir})"
        )
        return 0
    broker = broker_from_settings(settings)
    broker.start(timeout=args.timeout or 90.0)
    print(f"Kafka {settings.kafka_version} is up at {broker.bootstrap} (data: {broker.data_dir})")
    return 0


def kafka_down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = broker_from_settings(settings).stop()
    cluster = cluster_from_settings(settings)
    if cluster.state_file.exists():
        stopped = cluster.stop() or stopped
    print("Kafka stopped" if stopped else "Kafka was not running")
    return 0


def kafka_status(settings: Settings, args: argparse.Namespace) -> int:
    broker = broker_from_settings(settings)
    pid = broker.running_pid()
    if pid:
        print(f"Kafka running at {broker.bootstrap} (pid {pid})")
        return 0
    cluster = cluster_from_settings(settings)
    running = cluster.running() if cluster.state_file.exists() else {}
    if running:
        for node in cluster.nodes:
            state = f"pid {running[node.node_id]}" if node.node_id in running else "not running"
            print(f"Kafka node {node.node_id} at {node.bootstrap}: {state}")
        return 0 if len(running) == len(cluster.nodes) else 1
    print(f"Kafka not running at {broker.bootstrap}", file=sys.stderr)
    return 1


def kafka_fetch(settings: Settings, args: argparse.Namespace) -> int:
    try:
        libs = broker_from_settings(settings).distribution.ensure()
    except DispatchwireError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(libs)
    return 0
