"""JSON errors and bounded, validated request bodies.

Every error the API answers with has one shape: ``{"error": ..., "fields": [{"field",
"reason"}]}`` (``fields`` empty when the problem is not about one field).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from schemas.codec import SchemaError, parse

T = TypeVar("T", bound=BaseModel)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.fields = fields or []
        self.headers = headers
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"error": self.error, "fields": self.fields, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refusing (413) anything over ``max_bytes`` before reading all of it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        # isdigit() alone takes "²", which int() refuses
        if not (declared.isascii() and declared.isdigit()):
            raise ApiError(
                400,
                "invalid Content-Length header",
                [{"field": "Content-Length", "reason": "not a number"}],
            )
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        f"request body is larger than {max_bytes} bytes",
        [{"field": "body", "reason": f"at most {max_bytes} bytes (DISPATCHWIRE_MAX_BODY_BYTES)"}],
    )


def require_json(request: Request, body_sent: bool) -> None:
    """415 unless the body is declared ``application/json``. A form or ``text/plain`` post
    from another site needs no CORS preflight, so a command must never be read from one;
    a POST without any body (and no Content-Type) is fine where an empty body is."""
    ctype = request.headers.get("content-type")
    if ctype is None and not body_sent:
        return
    media = (ctype or "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(
            415,
            "send the body as application/json",
            [
                {
                    "field": "Content-Type",
                    "reason": f"expected application/json, got {media or 'none'}",
                }
            ],
        )


async def read_model_body(
    request: Request, model: type[T], max_bytes: int, allow_empty: bool = False
) -> T:
    """Parse the JSON body as ``model``: 415 if it is not declared JSON, 400 if it is not
    JSON, 422 naming each bad field."""
    raw = await read_body(request, max_bytes)
    require_json(request, bool(raw))
    if not raw.strip():
        if allow_empty:
            raw = b"{}"
        else:
            raise ApiError(
                400,
                "request body is empty; send a JSON object",
                [{"field": "body", "reason": "empty"}],
            )
    try:
        data = json.loads(raw)
    except RecursionError as exc:  # "[[[[..." deeper than the interpreter's stack
        raise ApiError(
            400,
            "request body is nested too deeply",
            [{"field": "body", "reason": "JSON nested too deeply"}],
        ) from exc
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of over 4300 digits
        raise ApiError(
            400, "request body is not valid JSON", [{"field": "body", "reason": str(exc)}]
        ) from exc
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "request body must be a JSON object",
            [{"field": "body", "reason": f"got {type(data).__name__}"}],
        )
    try:
        return parse(model, data)
    except SchemaError as exc:
        raise ApiError(422, "invalid request", exc.errors) from exc
