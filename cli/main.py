"""The ``dispatchwire`` command. Each part registers its own subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from analytics import cli as analytics_cli
from api import cli as api_cli
from cli import run, schemas_export
from dispatchwire import __version__, logs
from dispatchwire.errors import DispatchwireError
from dispatchwire.settings import Settings
from infra import cli as infra_cli
from streams import cli as streams_cli

# Modules with a ``register(subparsers)``; each adds the subcommands of its part, in this
# order (the order of ``--help``).
PART_CLIS: tuple[ModuleType, ...] = (
    infra_cli,
    schemas_export,
    run,
    streams_cli,
    analytics_cli,
    api_cli,
)


def _build() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="dispatchwire",
        description="Real-time emergency-response pipeline. Settings come from DISPATCHWIRE_* "
        "environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"dispatchwire {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ...")
    sub = parser.add_subparsers(dest="command", required=True)
    for part in PART_CLIS:
        part.register(sub)
    return parser, sub


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def subcommands() -> set[str]:
    return set(_build()[1].choices)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        settings = Settings()
        return int(args.func(settings, args) or 0)
    except DispatchwireError as exc:
        print(f"dispatchwire: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
