"""The one JSON encoding shared by every producer and consumer.

Compact UTF-8 JSON from pydantic, decoded through discriminated unions, so a command or
event is always checked on the way in. Validation problems become
``ValidationFailed`` with a list of ``{"field", "reason"}``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.commands import Command
from schemas.events import Event

T = TypeVar("T", bound=BaseModel)

COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class SchemaError(ValueError):
    """Input that does not fit a schema; ``errors`` lists ``{"field", "reason"}``.

    Kept free of our other packages (schemas imports nothing of ours); the API and the
    worker turn it into ``dispatchwire.errors.ValidationFailed`` where they need to.
    """

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        out.append({"field": loc, "reason": err["msg"]})
    return out


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def _decode(adapter: TypeAdapter[Any], raw: bytes | str | dict[str, Any]) -> Any:
    try:
        if isinstance(raw, dict):
            return adapter.validate_python(raw)
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise SchemaError(field_errors(exc)) from exc


def decode_command(raw: bytes | str | dict[str, Any]) -> Command:
    return _decode(COMMAND_ADAPTER, raw)


def decode_event(raw: bytes | str | dict[str, Any]) -> Event:
    return _decode(EVENT_ADAPTER, raw)


def parse(model: type[T], raw: bytes | str | dict[str, Any]) -> T:
    """Validate ``raw`` as ``model`` (a request body, an entity)."""
    try:
        if isinstance(raw, dict):
            return model.model_validate(raw)
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise SchemaError(field_errors(exc)) from exc


def dumps(obj: Any) -> str:
    """Compact JSON for plain data (live messages, snapshots)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
