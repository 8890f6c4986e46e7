"""``dispatchwire schemas export``: write the JSON Schema files for other languages."""

from __future__ import annotations

import argparse
from pathlib import Path

from dispatchwire.settings import Settings
from schemas.jsonschema import SCHEMA_DIR, export


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schemas = sub.add_parser("schemas", help="JSON Schema files of commands and events")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    exp = schemas_sub.add_parser("export", help="write schemas/json/*.schema.json")
    exp.add_argument("--dir", type=Path, default=SCHEMA_DIR)
    exp.set_defaults(func=export_schemas)


def export_schemas(settings: Settings, args: argparse.Namespace) -> int:
    for path in export(args.dir):
        print(path)
    return 0
