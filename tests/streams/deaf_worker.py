"""The worker (``streams.app``), whose requests to its group's coordinator go unanswered
while the file named by ``DEAF_MARKER`` exists: the paused-coordinator case of
``tests/faults/test_cluster_faults.py`` made on purpose, on one broker.

Every request aiokafka's group coordinator sends (heartbeat, commit, join, sync) is held
before it leaves until the marker is gone; fetches and produces go to the partitions'
leaders as before. So the group stops hearing from the worker and drops it after the
session timeout, while the worker goes on fetching its partitions: what a worker whose
coordinator went silent did until its own requests timed out. Started by
``tests/streams/test_lease_fence.py``.

With ``DEAF_REJOIN_LATE`` set, the rebalance a fenced batch asks for
(``streams.progress.request_rejoin``) goes on only once the worker has joined a later
generation by itself (its held heartbeat, answered "unknown member", rejoins it): the order
a loaded machine gives when the request's hop to the consumer's thread is slow.

With ``DEAF_ONLY`` set (request class names, comma-separated), only those requests are
held: ``OffsetCommitRequest`` makes a commit that stays in flight while the group goes on.
With ``REJOIN_MARKER`` set, the worker asks its group to rebalance once each time that file
appears (and removes it): a rebalance at a moment the test chooses, as another worker
joining would bring. Started by ``tests/streams/test_commit_in_flight.py`` so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import faust
from aiokafka.consumer.group_coordinator import GroupCoordinator

from dispatchwire.settings import Settings
from streams import progress
from streams.app import create_faust_app
from streams.lease import group_coordinator

log = logging.getLogger(__name__)


def main() -> None:
    marker = Path(os.environ["DEAF_MARKER"])
    app = create_faust_app(Settings())  # (installs the lease's own wrapper first)
    send_req = GroupCoordinator._send_req

    only = {name for name in os.environ.get("DEAF_ONLY", "").split(",") if name}

    async def deaf_send_req(self: Any, request: Any) -> Any:
        if marker.exists() and (not only or type(request).__name__ in only):
            log.warning("DEAF: %s held until the marker is gone", type(request).__name__)
            while marker.exists():
                await asyncio.sleep(0.05)
        return await send_req(self, request)

    GroupCoordinator._send_req = deaf_send_req  # type: ignore[method-assign]
    if os.environ.get("DEAF_REJOIN_LATE"):
        request_rejoin_after_own_rejoin()
    if os.environ.get("REJOIN_MARKER"):
        rejoin_on_marker(app, Path(os.environ["REJOIN_MARKER"]))

    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


def request_rejoin_after_own_rejoin() -> None:
    request_rejoin = progress.request_rejoin

    async def late(app: Any, past: int | None = None) -> None:
        def generation() -> int:
            return group_coordinator(app).generation  # type: ignore[no-any-return]

        if past is not None:
            deadline = time.monotonic() + 60
            while generation() <= past and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            log.warning("DEAF: the fence's rejoin request goes on in generation %d", generation())
        await request_rejoin(app, past=past)

    progress.request_rejoin = late


def rejoin_on_marker(app: Any, marker: Path) -> None:
    @app.timer(0.05)
    async def rejoin_when_asked() -> None:
        if marker.exists():
            marker.unlink()
            log.warning("REJOIN: asking the group to rebalance")
            await progress.request_rejoin(app)


if __name__ == "__main__":
    main()
