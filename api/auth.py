"""Roles by bearer token, and the rate limit on reports.

Tokens come from settings (``DISPATCHWIRE_AUTHORITY_TOKEN``, ``_UNIT_TOKEN``,
``_REPORTER_TOKEN``), plus one token per unit: ``unit.<unit_id>.<signature>``, an HMAC of
the unit id (``unit_token_for``, minted by ``dispatchwire unit-token UNIT_ID``) under
``DISPATCHWIRE_UNIT_SIGNING_KEY`` (by default a key derived from the authority token, so
only whoever holds that can mint one). A unit's own token reads what the shared unit
token reads and changes the status of that unit only; the shared ``_UNIT_TOKEN`` reads
(the units map) and changes no unit. Where a token is read:

- ``Authorization: Bearer <token>``: every endpoint.
- cookie ``dw_token``: GET endpoints and ``/ws`` only (a cookie on a POST would let another
  site send commands on a dispatcher's behalf).
- query ``?token=``: ``/api/stream`` and ``/ws`` only, because ``EventSource`` cannot send
  headers.

Who may do what:

- report an emergency: anyone (rate limited per client IP; authority and unit tokens are
  not limited), or only reporter/authority tokens when
  ``DISPATCHWIRE_REQUIRE_REPORTER_TOKEN`` is set;
- dispatch / complete / cancel: authority; unit status: authority, or that unit's own token;
- the live stream, ``/ws``, ``/api/state``, ``/api/emergencies``, ``/api/units``: authority
  or unit (the dashboard and the units map see every emergency and unit and where they
  are, so a reporter token does not open them). A unit token reads them without the
  reporters' names and phones (``reporter`` is ``null``: ``LiveMessage.for_units``,
  ``ReadModel.state_text(redact=True)``); only authority sees who called;
- ``/api/emergencies/{id}``: anyone who knows the id (the reporter's tracking view, without
  the reporter's name and phone; ids are random 128-bit values); authority sees it whole.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections import deque
from enum import StrEnum

from starlette.requests import HTTPConnection

from api.http import ApiError
from dispatchwire.settings import Settings

COOKIE = "dw_token"
UNIT_TOKEN_PREFIX = "unit."  # noqa: S105 (a prefix, not a secret)


class Role(StrEnum):
    AUTHORITY = "authority"
    UNIT = "unit"
    REPORTER = "reporter"


# Every role set the API checks lives here.
READERS = frozenset({Role.AUTHORITY, Role.UNIT})  # state, lists, the live stream, /ws
AUTHORITY = frozenset({Role.AUTHORITY})  # dispatch, complete, cancel; snapshot, replay
REPORTERS = frozenset({Role.REPORTER, Role.AUTHORITY})  # reports, when a token is required
UNIT_CHANGERS = frozenset({Role.UNIT, Role.AUTHORITY})  # a unit's status (its own token)


def unit_signing_key(settings: Settings) -> bytes:
    """The key of the per-unit tokens: the setting, else one derived from the authority
    token (a unit holding its own or the shared unit token cannot mint another)."""
    key = settings.unit_signing_key.get_secret_value()
    if key:
        return key.encode()
    authority = settings.authority_token.get_secret_value().encode()
    return hashlib.sha256(b"dispatchwire unit tokens\0" + authority).digest()


def _unit_signature(key: bytes, unit_id: str) -> str:
    digest = hmac.new(key, f"unit:{unit_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def unit_token_for(settings: Settings, unit_id: str) -> str:
    """The bearer token of one unit: ``unit.<unit_id>.<signature>``."""
    return f"{UNIT_TOKEN_PREFIX}{unit_id}.{_unit_signature(unit_signing_key(settings), unit_id)}"


class Auth:
    def __init__(self, settings: Settings) -> None:
        self._tokens = [
            (settings.authority_token.get_secret_value(), Role.AUTHORITY),
            (settings.unit_token.get_secret_value(), Role.UNIT),
            (settings.reporter_token.get_secret_value(), Role.REPORTER),
        ]
        self._unit_key = unit_signing_key(settings)
        self._metrics_token = settings.metrics_token.get_secret_value()

    def _role_for(self, token: str) -> Role | None:
        found = None
        for known, role in self._tokens:
            # compare against every token, so timing says nothing about which matched
            if known and hmac.compare_digest(known.encode(), token.encode()) and found is None:
                found = role
        if found is None and self.unit_of_token(token) is not None:
            found = Role.UNIT
        return found

    def unit_of_token(self, token: str) -> str | None:
        """The unit a per-unit token names, if its signature holds."""
        if not token.startswith(UNIT_TOKEN_PREFIX):
            return None
        unit_id, _, signature = token[len(UNIT_TOKEN_PREFIX) :].rpartition(".")
        if not unit_id:
            return None
        expected = _unit_signature(self._unit_key, unit_id)
        return unit_id if hmac.compare_digest(expected.encode(), signature.encode()) else None

    def require_unit(self, conn: HTTPConnection, unit_id: str) -> Role:
        """Authority, or the token of unit ``unit_id`` itself: 401 without a token, 403 for
        any other role or unit."""
        role = self.require(conn, UNIT_CHANGERS)
        if role is Role.AUTHORITY:
            return role
        token = self.token_of(conn, cookie=False, query=False) or ""
        own = self.unit_of_token(token)
        if own != unit_id:
            reason = (
                f"a token of unit {own} cannot change another unit"
                if own
                else "the shared unit token changes no unit; use the unit's own token "
                "(dispatchwire unit-token UNIT_ID)"
            )
            raise ApiError(
                403,
                "this token cannot change this unit",
                [{"field": "Authorization", "reason": reason}],
            )
        return role

    def token_of(self, conn: HTTPConnection, *, cookie: bool, query: bool) -> str | None:
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if query and conn.query_params.get("token"):
            return conn.query_params["token"]
        if cookie and conn.cookies.get(COOKIE):
            return conn.cookies[COOKIE]
        return None

    def role(
        self, conn: HTTPConnection, *, cookie: bool = False, query: bool = False
    ) -> Role | None:
        """The caller's role; 401 for a token that matches none."""
        token = self.token_of(conn, cookie=cookie, query=query)
        if token is None:
            return None
        role = self._role_for(token)
        if role is None:
            raise ApiError(
                401,
                "unknown token",
                [{"field": "Authorization", "reason": "token matches no role"}],
                headers={"WWW-Authenticate": "Bearer"},
            )
        return role

    def require(
        self,
        conn: HTTPConnection,
        allowed: frozenset[Role],
        *,
        cookie: bool = False,
        query: bool = False,
    ) -> Role:
        """The caller's role if it is one of ``allowed``; 401 without a token, 403 otherwise."""
        role = self.role(conn, cookie=cookie, query=query)
        needed = " or ".join(sorted(allowed))
        if role is None:
            raise ApiError(
                401,
                f"this needs a {needed} token",
                [{"field": "Authorization", "reason": "missing bearer token"}],
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role not in allowed:
            raise ApiError(
                403,
                f"a {role} token cannot do this; it needs {needed}",
                [{"field": "Authorization", "reason": f"role {role} not allowed"}],
            )
        return role

    def require_authority(self, conn: HTTPConnection) -> None:
        """Authority by header, cookie (GET) or ``?token=`` (EventSource): 401 without a
        token or with an unknown one, 403 for another role."""
        self.require(conn, AUTHORITY, cookie=conn.scope.get("method") == "GET", query=True)

    def require_metrics(self, conn: HTTPConnection) -> None:
        """``/metrics`` outside dev: the metrics token or the authority token (header)."""
        token = self.token_of(conn, cookie=False, query=False) or ""
        if self._metrics_token and hmac.compare_digest(
            self._metrics_token.encode(), token.encode()
        ):
            return
        self.require(conn, AUTHORITY)


# Roles whose reports are not rate limited: they are authenticated, and behind a proxy that
# sets no X-Forwarded-For they would otherwise share one bucket with every reporter.
RATE_EXEMPT = frozenset({Role.AUTHORITY, Role.UNIT})


class RateLimiter:
    """At most ``per_minute`` hits per key in any 60-second window (sliding log).

    The key is the client address as uvicorn puts it in the scope: the peer's, or the
    ``X-Forwarded-For`` client when the peer is one of ``DISPATCHWIRE_API_TRUSTED_PROXIES``
    (``api.server``); a client cannot choose its bucket with a header.
    """

    WINDOW_S = 60.0
    MAX_KEYS = 100_000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str, now: float | None = None) -> None:
        """Record a hit, or raise 429 with ``Retry-After`` when the key is over its limit."""
        if self.per_minute <= 0:
            return
        now = time.monotonic() if now is None else now
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.MAX_KEYS:
                self._prune(now)
            hits = self._hits[key] = deque()
        while hits and now - hits[0] >= self.WINDOW_S:
            hits.popleft()
        if len(hits) >= self.per_minute:
            retry_after = max(1, math.ceil(self.WINDOW_S - (now - hits[0])))
            raise ApiError(
                429,
                f"too many reports from this address; try again in {retry_after}s",
                headers={"Retry-After": str(retry_after)},
            )
        hits.append(now)

    def _prune(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or now - h[-1] >= self.WINDOW_S]:
            del self._hits[key]
        if len(self._hits) >= self.MAX_KEYS:  # still full of active keys: forget the oldest
            for key in list(self._hits)[: len(self._hits) // 2]:
                del self._hits[key]
