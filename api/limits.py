"""Limits on what one client may hold: request heads, slow requests, live connections.

Request heads and slow requests are limited in the HTTP protocol itself
(``LimitedHttpToolsProtocol``), because uvicorn's httptools protocol has no limit at all:
llhttp buffers a header line that never ends, and a client that sends one header line every
few seconds (or fewer body bytes than its ``Content-Length``) holds its connection forever.
Each refusal is one JSON answer in the API's error shape, then the connection is closed:

- a request line plus headers over ``api_max_header_bytes``, or more than
  ``api_max_headers`` header lines: 431;
- a head not complete within ``api_head_timeout_s`` of the connection (or of its first
  byte, for the next request on a kept-alive connection): 408;
- a body not complete within ``api_body_timeout_s`` of its head: 408 (or just the close,
  when the app has already answered).

Why a subclass of the httptools protocol and not h11 with ``h11_max_incomplete_event_size``:
h11 would cap the head size, but neither the header count nor the time, and it parses in
pure Python, on the send path of every live message as well. The subclass only adds work
per received chunk and per request; writes (the fan-out) are untouched. Measured with the
fan-out load client, 500 SSE clients on loopback: deliveries/s within the run-to-run noise
of stock httptools, h11 below both; the figures are in the README ("Server limits").

Live connections (``/api/stream`` and ``/ws``) are counted per client address and in total
(``LiveConnections``): over the per-address cap a new one gets 429, over the total cap 503,
both with ``Retry-After``; ``/ws`` accepts first and closes with ``schemas.live.TOO_MANY``
so that a browser sees why.
"""

from __future__ import annotations

import http
import json
import logging
from asyncio import TimerHandle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.http import ApiError
from dispatchwire.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a refused live connection is told to wait


@dataclass(frozen=True)
class RequestLimits:
    max_header_bytes: int
    max_headers: int
    head_timeout_s: float
    body_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        return cls(
            settings.api_max_header_bytes,
            settings.api_max_headers,
            settings.api_head_timeout_s,
            settings.api_body_timeout_s,
        )


class _LimitState:
    __slots__ = (
        "head_began",
        "head_size",
        "header_count",
        "in_head",
        "raw_head",
        "refusal",
        "refused",
        "timer",
    )

    def __init__(self) -> None:
        self.timer: TimerHandle | None = None
        self.in_head = False
        self.head_began = False  # set by on_message_begin, read by data_received
        self.raw_head = 0  # bytes of an unfinished head, counted per received chunk
        self.head_size = 0  # bytes of the URL and the completed header lines
        self.header_count = 0
        self.refusal: tuple[int, str, str, str] | None = None
        self.refused = False


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; ``data_received`` answers it."""


def refusal_bytes(status: int, error: str, field: str, reason: str) -> bytes:
    """A complete HTTP/1.1 answer in the API's error shape, closing the connection."""
    body = json.dumps(
        {"error": error, "fields": [{"field": field, "reason": reason}]}, separators=(",", ":")
    ).encode()
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "cache-control: no-store\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the request head and on slow requests.

    One timer per connection at most: the head timer runs from the connection (or the
    next request's first byte) to the end of the head; the body timer from the end of the
    head to the end of the body (cancelled at once for requests without one).
    """

    limits: RequestLimits  # set by ``limited_http_protocol``

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One attribute, not eight: CPython shares the key table of instance dicts only up
        # to 30 keys, and past that every idle connection paid ~1.3 KiB more (measured).
        self._limit = _LimitState()

    # --- connection

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm(self.limits.head_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._limit.refused:
            return
        self._unset_keepalive_if_required()
        self._limit.head_began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._limit.refusal is not None:
                self._refuse(*self._limit.refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        # A head still unfinished after this chunk: llhttp holds its partial header line
        # in memory, so count what arrived (from the next chunk on, if it began in this one).
        if self._limit.in_head and not self._limit.head_began:
            self._limit.raw_head += len(data)
            if self._limit.raw_head > self.limits.max_header_bytes:
                self._refuse(*self._too_large_head())

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    # --- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._limit.in_head = True
        self._limit.head_began = True
        self._limit.raw_head = self._limit.head_size = self._limit.header_count = 0
        if self._limit.timer is None:  # the first request's clock started with the connection
            self._arm(self.limits.head_timeout_s, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._limit.head_size += len(url)
        if self._limit.head_size > self.limits.max_header_bytes:
            self._stop(*self._too_large_head())
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._limit.header_count += 1
        self._limit.head_size += len(name) + len(value) + 4
        if self._limit.header_count > self.limits.max_headers:
            self._stop(
                431,
                "too many request headers",
                "headers",
                f"at most {self.limits.max_headers} header lines (DISPATCHWIRE_API_MAX_HEADERS)",
            )
        if self._limit.head_size > self.limits.max_header_bytes:
            self._stop(*self._too_large_head())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._limit.in_head = False
        self._disarm()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self.limits.body_timeout_s, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # --- refusing

    def _too_large_head(self) -> tuple[int, str, str, str]:
        return (
            431,
            "request headers too large",
            "headers",
            f"request line and headers over {self.limits.max_header_bytes} bytes "
            "(DISPATCHWIRE_API_MAX_HEADER_BYTES)",
        )

    def _stop(self, status: int, error: str, field: str, reason: str) -> None:
        self._limit.refusal = (status, error, field, reason)
        raise _Refused(error)

    def _head_timed_out(self) -> None:
        self._limit.timer = None
        self._refuse(
            408,
            "request head not received in time",
            "headers",
            f"the request line and headers must arrive within "
            f"{self.limits.head_timeout_s:g}s (DISPATCHWIRE_API_HEAD_TIMEOUT_S)",
        )

    def _body_timed_out(self) -> None:
        self._limit.timer = None
        self._refuse(
            408,
            "request body not received in time",
            "body",
            f"the body must arrive within {self.limits.body_timeout_s:g}s of the "
            "headers (DISPATCHWIRE_API_BODY_TIMEOUT_S)",
            in_body=True,
        )

    def _refuse(
        self, status: int, error: str, field: str, reason: str, *, in_body: bool = False
    ) -> None:
        """Answer ``status`` unless this request (for a head: the one before it) already
        has an answer under way, then close the connection."""
        self._limit.refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle  # a refused head has none of its own yet: this is the last one
        if in_body:
            answer = cycle is not None and not cycle.response_started
        else:
            answer = cycle is None or cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app is running: from now on it reads a disconnect
            cycle.message_event.set()
        if answer:
            self.transport.write(refusal_bytes(status, error, field, reason))
        log.info(
            "refused a request from %s: %d %s",
            self.client[0] if self.client else "?",
            status,
            error,
        )
        self.transport.close()

    # --- the one timer

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        if seconds > 0:
            self._limit.timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._limit.timer is not None:
            self._limit.timer.cancel()
            self._limit.timer = None


def limited_http_protocol(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """The HTTP protocol class for uvicorn, with the limits of ``settings``."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": RequestLimits.from_settings(settings)},
    )


class LiveConnections:
    """Live connections (SSE and WebSocket) per client address and in total.

    ``acquire`` takes a slot or raises the refusal (429 per address, 503 in total, with
    ``Retry-After``); the release it returns gives the slot back, once.
    """

    def __init__(
        self,
        per_address: int,
        total: int,
        on_refused: Callable[[str, str], None] = lambda transport, cap: None,
        names: tuple[str, str] = (
            "DISPATCHWIRE_API_MAX_LIVE_PER_ADDRESS",
            "DISPATCHWIRE_API_MAX_LIVE_TOTAL",
        ),
    ) -> None:
        self.per_address = per_address
        self.total = total
        self.on_refused = on_refused
        self.names = names  # the settings of the two caps, named in a refusal
        self._by_address: dict[str, int] = {}
        self.open = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, on_refused: Callable[[str, str], None]
    ) -> LiveConnections:
        return cls(settings.api_max_live_per_address, settings.api_max_live_total, on_refused)

    def acquire(self, address: str, transport: str) -> Callable[[], None]:
        held = self._by_address.get(address, 0)
        if 0 < self.per_address <= held:
            self.on_refused(transport, "per_address")
            raise ApiError(
                429,
                "too many live connections from this address",
                [
                    {
                        "field": "connections",
                        "reason": f"at most {self.per_address} per address "
                        f"({self.names[0]}); close one or retry later",
                    }
                ],
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if 0 < self.total <= self.open:
            self.on_refused(transport, "total")
            raise ApiError(
                503,
                "the server is at its live connection limit",
                [
                    {
                        "field": "connections",
                        "reason": f"at most {self.total} in all ({self.names[1]}); retry later",
                    }
                ],
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._by_address[address] = held + 1
        self.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.open -= 1
            left = self._by_address[address] - 1
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]

        return release


class HeldStream(EventSourceResponse):
    """An sse-starlette stream that gives its connection slot (``LiveConnections.acquire``)
    back when it ends, however it ends: the replay and tracking streams."""

    def __init__(self, release: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()
