"""Export JSON Schema files for clients in other languages (``schemas/json/*.schema.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.codec import COMMAND_ADAPTER, EVENT_ADAPTER
from schemas.entities import Emergency, Unit
from schemas.requests import (
    CancelRequest,
    DispatchRequest,
    ReportRequest,
    UnitStatusRequest,
)

SCHEMA_DIR = Path(__file__).with_name("json")


def all_schemas() -> dict[str, dict[str, Any]]:
    return {
        "command": COMMAND_ADAPTER.json_schema(),
        "event": EVENT_ADAPTER.json_schema(),
        "emergency": Emergency.model_json_schema(),
        "unit": Unit.model_json_schema(),
        "report_request": ReportRequest.model_json_schema(),
        "dispatch_request": DispatchRequest.model_json_schema(),
        "cancel_request": CancelRequest.model_json_schema(),
        "unit_status_request": UnitStatusRequest.model_json_schema(),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(render(schema))
        written.append(path)
    return written
