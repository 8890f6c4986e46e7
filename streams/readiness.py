"""Whether the worker can reach the broker, for its ready page (issue 10, item 5).

The ready page said "200 ready" through a 30 s broker outage: it looked only at the
consumer's assignment, which aiokafka keeps while it retries a dead broker. ``BrokerContact``
asks the broker for its metadata every ``PROBE_INTERVAL_S`` over the worker's own producer
connection (the one its events leave by) and remembers when it last got an answer; the page
reports 503 once that is older than ``Settings.worker_broker_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from infra.clients import metadata_round_trip

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0


class BrokerContact:
    """When the worker last heard from the broker, and why not since."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        # Starting counts as contact: until the first probe, the assignment checks decide.
        self.last_answer = time.monotonic()
        self.last_error: str | None = None

    async def probe(self, app: Any) -> None:
        """One metadata round trip over the producer's client, bounded by the timeout."""
        try:
            client = app.producer._ensure_producer().client
            await asyncio.wait_for(
                metadata_round_trip(client), timeout=min(self.timeout_s, 2 * PROBE_INTERVAL_S)
            )
        except Exception as exc:  # no answer, whatever the reason
            if self.last_error is None:
                log.warning("the broker does not answer the worker: %r", exc)
            self.last_error = repr(exc) or type(exc).__name__
            return
        if self.last_error is not None:
            log.info("the broker answers the worker again")
        self.last_answer = time.monotonic()
        self.last_error = None

    def unreachable(self) -> str | None:
        """Why the broker counts as unreachable, or None if it answered recently enough."""
        silent_s = time.monotonic() - self.last_answer
        if silent_s <= self.timeout_s:
            return None
        return f"no answer from the broker for {silent_s:.1f}s ({self.last_error})"
