"""The worker (``streams.app``), whose requests to its group's coordinator go unanswered
while the file named by ``DEAF_MARKER`` exists: the paused-coordinator case of
``tests/faults/test_cluster_faults.py`` made on purpose, on one broker.

Every request aiokafka's group coordinator sends (heartbeat, commit, join, sync) is held
before it leaves until the marker is gone; fetches and produces go to the partitions'
leaders as before. So the group stops hearing from the worker and drops it after the
session timeout, while the worker goes on fetching its partitions: what a worker whose
coordinator went silent did until its own requests timed out. Started by
``tests/streams/test_lease_fence.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import faust
from aiokafka.consumer.group_coordinator import GroupCoordinator

from dispatchwire.settings import Settings
from streams.app import create_faust_app

log = logging.getLogger(__name__)


def main() -> None:
    marker = Path(os.environ["DEAF_MARKER"])
    app = create_faust_app(Settings())  # (installs the lease's own wrapper first)
    send_req = GroupCoordinator._send_req

    async def deaf_send_req(self: Any, request: Any) -> Any:
        if marker.exists():
            log.warning("DEAF: %s held until the marker is gone", type(request).__name__)
            while marker.exists():
                await asyncio.sleep(0.05)
        return await send_req(self, request)

    GroupCoordinator._send_req = deaf_send_req  # type: ignore[method-assign]

    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
