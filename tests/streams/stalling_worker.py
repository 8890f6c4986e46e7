"""The worker (``streams.app``), whose consumer flow stops once the file named by
``STALL_MARKER`` exists: the state of the takeover stall (issue 14) made on purpose.

Faust stops a consumer's flow when a rebalance revokes its partitions and resumes it when
the table has recovered; in the stall the survivor kept its partitions and never moved them
again. ``Consumer.stop_flow()`` puts a worker in that state with Faust's own switch: it
keeps its assignment and its ready page, and nothing on its partitions is acked. Only a
rebalance resumes the flow, so a worker that leaves it stopped answers nothing until one
comes. Started by ``tests/streams/test_takeover_guard.py``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faust

from dispatchwire.settings import Settings
from streams.app import create_faust_app

log = logging.getLogger(__name__)


def main() -> None:
    marker = Path(os.environ["STALL_MARKER"])
    app = create_faust_app(Settings())
    stopped: list[bool] = []

    @app.timer(interval=0.2, name="stall_on_marker")
    async def stall_on_marker() -> None:
        if stopped or not marker.exists():
            return
        stopped.append(True)
        app.consumer.stop_flow()
        log.warning("STALLED: the consumer's flow is stopped")

    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
