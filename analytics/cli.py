"""Subcommands of the analytics part: ``sink``, ``snapshot``, ``query``, ``export-map``,
``export``, ``import``, ``replay``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from tqdm import tqdm

from analytics.jsonl import export_to_file, import_from_file
from analytics.logio import ReplayStats, Window
from analytics.replay import parse_replay_query, replay_to_topic
from dispatchwire.errors import ValidationFailed
from dispatchwire.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sink = sub.add_parser("sink", help="store every event in DuckDB (exactly once)")
    sink.add_argument(
        "--until-caught-up",
        action="store_true",
        help="stop once the log end (as of start) is stored",
    )
    sink.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="events per DuckDB transaction (default DISPATCHWIRE_SINK_BATCH_SIZE)",
    )
    sink.set_defaults(func=run_sink)

    snap = sub.add_parser("snapshot", help="write a point-in-time .duckdb copy of the sink")
    snap.add_argument("path", type=Path)
    snap.add_argument("--timeout", type=float, default=60.0)
    snap.set_defaults(func=run_snapshot)

    from analytics.queries import QUERIES

    query = sub.add_parser("query", help="run a ready analyst query on a snapshot")
    query.add_argument("name", choices=QUERIES)
    query.add_argument(
        "--db",
        type=Path,
        default=None,
        help="snapshot file (default: the sink database, if the sink is stopped)",
    )
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(func=run_query)

    mp = sub.add_parser("export-map", help="write an offline pydeck HTML map of a snapshot")
    mp.add_argument("snapshot", type=Path)
    mp.add_argument("out", type=Path)
    mp.set_defaults(func=run_export_map)

    export = sub.add_parser("export", help="write a window of the event log to JSON Lines")
    export.add_argument("out", type=Path)
    _window_args(export)
    export.add_argument("--topic", default=None, help="default: the events topic")
    export.set_defaults(func=run_export)

    imp = sub.add_parser("import", help="send the events of a JSON Lines file to a topic")
    imp.add_argument("file", type=Path)
    imp.add_argument("--topic", required=True)
    imp.add_argument("--speed", default="max", help="factor, or 'max' (default)")
    imp.set_defaults(func=run_import)

    replay = sub.add_parser("replay", help="re-emit a window of the event log into a topic")
    replay.add_argument("--to-topic", required=True)
    replay.add_argument("--from-topic", default=None, help="default: the events topic")
    replay.add_argument("--speed", default="max", help="factor, or 'max' (default)")
    _window_args(replay)
    replay.set_defaults(func=run_replay)


def _window_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="from_", default=None, help="ISO-8601 time or epoch ms (Kafka record time)"
    )
    parser.add_argument("--to", default=None, help="ISO-8601 time or epoch ms, exclusive")
    parser.add_argument(
        "--from-position", default=None, help="a log position, e.g. 120.98 (as /api/state shows it)"
    )
    parser.add_argument(
        "--to-position", default=None, help="a log position, e.g. 500.410; exclusive"
    )


def _window(args: argparse.Namespace) -> tuple[Window, float | None]:
    params = {
        "from": args.from_ if hasattr(args, "from_") else None,
        "to": getattr(args, "to", None),
        "from_position": getattr(args, "from_position", None),
        "to_position": getattr(args, "to_position", None),
        "speed": getattr(args, "speed", "max"),
    }
    window, speed, errors = parse_replay_query({k: v for k, v in params.items() if v})
    if errors:
        raise ValidationFailed(errors)
    return window, speed


class _Bar:
    """A tqdm progress bar (rate, ETA) on stderr, fed per chunk rather than per record."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.bar: tqdm | None = None

    def start(self, total: int | None) -> None:
        self.bar = tqdm(
            total=total,
            unit="ev",
            unit_scale=True,
            desc=self.what,
            mininterval=0.5,
            file=sys.stderr,
        )

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _report(what: str, stats: ReplayStats) -> None:
    print(f"{what} {stats.events} events in {stats.seconds:.2f}s ({stats.rate:.0f} events/s)")


def run_sink(settings: Settings, args: argparse.Namespace) -> int:
    from analytics.sink import Sink

    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sink = Sink(settings, batch_size=args.batch_size)
    sink.open()
    try:
        stats = sink.run(lambda: stopping, until_caught_up=args.until_caught_up)
    finally:
        sink.close()
    print(
        f"sink stored {stats.events} new events from {stats.records} records "
        f"({stats.rate:.0f} records/s)"
    )
    return 0


def run_snapshot(settings: Settings, args: argparse.Namespace) -> int:
    from analytics.snapshot import take_snapshot

    info = take_snapshot(settings, args.path, timeout=args.timeout)
    print(
        f"snapshot {info.path}: {info.events} events, log position {info.position}, "
        f"taken {info.taken_at}Z"
    )
    return 0


def run_query(settings: Settings, args: argparse.Namespace) -> int:
    from analytics.queries import render
    from analytics.queries import run_query as query

    print(render(query(args.db or settings.sink_db, args.name), args.format))
    return 0


def run_export_map(settings: Settings, args: argparse.Namespace) -> int:
    from analytics.maps import write_map
    from schemas.geo import configured_network

    network = configured_network(settings.osm_file, settings.data_dir)
    out = write_map(args.snapshot, args.out, network)
    print(f"map written to {out} (opens offline in a browser)")
    return 0


def run_export(settings: Settings, args: argparse.Namespace) -> int:
    window, _ = _window(args)
    with _Bar("export") as bar:
        stats = export_to_file(settings, window, args.out, topic=args.topic, progress=bar)
    _report(f"exported to {args.out}:", stats)
    return 0


def run_import(settings: Settings, args: argparse.Namespace) -> int:
    _, speed = _window(args)
    with _Bar("import") as bar:
        stats = import_from_file(settings, args.file, args.topic, speed=speed, progress=bar)
    _report(f"imported into {args.topic}:", stats)
    return 0


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    window, speed = _window(args)
    with _Bar("replay") as bar:
        stats = replay_to_topic(
            settings, window, args.to_topic, from_topic=args.from_topic, speed=speed, progress=bar
        )
    _report(f"replayed into {args.to_topic}:", stats)
    return 0
