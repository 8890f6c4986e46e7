"""``dispatchwire kafka up|down|status``."""

from __future__ import annotations

import argparse
import sys

from dispatchwire.errors import DispatchwireError
from dispatchwire.settings import Settings
from infra.kafka import broker_from_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kafka = sub.add_parser("kafka", help="fetch, start and stop the local Kafka broker")
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True)
    up = kafka_sub.add_parser("up", help="fetch Kafka (cached) and start a KRaft broker")
    up.add_argument("--timeout", type=float, default=90.0)
    up.set_defaults(func=kafka_up)
    kafka_sub.add_parser("down", help="stop the local broker").set_defaults(func=kafka_down)
    kafka_sub.add_parser("status", help="is the local broker running").set_defaults(
        func=kafka_status
    )
    kafka_sub.add_parser("fetch", help="only fetch the server artifacts").set_defaults(
        func=kafka_fetch
    )


def kafka_up(settings: Settings, args: argparse.Namespace) -> int:
    broker = broker_from_settings(settings)
    broker.start(timeout=args.timeout)
    print(f"Kafka {settings.kafka_version} is up at {broker.bootstrap} (data: {broker.data_dir})")
    return 0


def kafka_down(settings: Settings, args: argparse.Namespace) -> int:
    broker = broker_from_settings(settings)
    print("Kafka stopped" if broker.stop() else "Kafka was not running")
    return 0


def kafka_status(settings: Settings, args: argparse.Namespace) -> int:
    broker = broker_from_settings(settings)
    pid = broker.running_pid()
    if pid:
        print(f"Kafka running at {broker.bootstrap} (pid {pid})")
        return 0
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
