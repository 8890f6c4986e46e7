"""Roles by bearer token, and the rate limit on reports.

Tokens come from settings (``DISPATCHWIRE_AUTHORITY_TOKEN``, ``_UNIT_TOKEN``,
``_REPORTER_TOKEN``). Where a token is read:

- ``Authorization: Bearer <token>``: every endpoint.
- cookie ``dw_token``: GET endpoints and ``/ws`` only (a cookie on a POST would let another
  site send commands on a dispatcher's behalf).
- query ``?token=``: ``/api/stream`` and ``/ws`` only, because ``EventSource`` cannot send
  headers.

Who may do what:

- report an emergency: anyone (rate limited per client IP; authority and unit tokens are
  not limited), or only reporter/authority tokens when
  ``DISPATCHWIRE_REQUIRE_REPORTER_TOKEN`` is set;
- dispatch / complete / cancel: authority; unit status: unit or authority;
- the live stream, ``/ws``, ``/api/state``, ``/api/emergencies``, ``/api/units``: authority
  or unit (the dashboard and the units map see every emergency and unit, which includes
  reporters' locations and phone numbers, so a reporter token does not open them);
- ``/api/emergencies/{id}``: anyone who knows the id (the reporter's tracking view; ids are
  random 128-bit values).
"""

from __future__ import annotations

import hmac
import math
import time
from collections import deque
from enum import StrEnum

from starlette.requests import HTTPConnection

from api.http import ApiError
from dispatchwire.settings import Settings

COOKIE = "dw_token"


class Role(StrEnum):
    AUTHORITY = "authority"
    UNIT = "unit"
    REPORTER = "reporter"


READERS = frozenset({Role.AUTHORITY, Role.UNIT})


class Auth:
    def __init__(self, settings: Settings) -> None:
        self._tokens = [
            (settings.authority_token.get_secret_value(), Role.AUTHORITY),
            (settings.unit_token.get_secret_value(), Role.UNIT),
            (settings.reporter_token.get_secret_value(), Role.REPORTER),
        ]

    def _role_for(self, token: str) -> Role | None:
        found = None
        for known, role in self._tokens:
            # compare against every token, so timing says nothing about which matched
            if known and hmac.compare_digest(known.encode(), token.encode()) and found is None:
                found = role
        return found

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
            raise ApiError(401, "unknown token", [{"field": "Authorization",
                                                   "reason": "token matches no role"}],
                           headers={"WWW-Authenticate": "Bearer"})
        return role

    def require(self, conn: HTTPConnection, allowed: frozenset[Role], *, cookie: bool = False,
                query: bool = False) -> Role:
        """The caller's role if it is one of ``allowed``; 401 without a token, 403 otherwise."""
        role = self.role(conn, cookie=cookie, query=query)
        needed = " or ".join(sorted(allowed))
        if role is None:
            raise ApiError(401, f"this needs a {needed} token",
                           [{"field": "Authorization", "reason": "missing bearer token"}],
                           headers={"WWW-Authenticate": "Bearer"})
        if role not in allowed:
            raise ApiError(403, f"a {role} token cannot do this; it needs {needed}",
                           [{"field": "Authorization", "reason": f"role {role} not allowed"}])
        return role


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
            raise ApiError(429, f"too many reports from this address; try again in "
                           f"{retry_after}s", headers={"Retry-After": str(retry_after)})
        hits.append(now)

    def _prune(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or now - h[-1] >= self.WINDOW_S]:
            del self._hits[key]
        if len(self._hits) >= self.MAX_KEYS:  # still full of active keys: forget the oldest
            for key in list(self._hits)[: len(self._hits) // 2]:
                del self._hits[key]
