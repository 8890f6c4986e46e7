"""The worker (``streams.app``), each GPS fix of which takes ``SLOW_FIX_S`` more to decide.

``tests/streams/test_batch_parts.py`` shows that a report's event leaves while the rest of
its batch is still being decided, once its own part's table writes are acknowledged. With
fixes at their real cost (~70 us) the rest of a 491-command batch took 22-36 ms, about as
long as an acknowledgement on a loaded machine, so the test failed now and then although
nothing had changed. Here each fix takes a millisecond longer (a sleep, so the other
processes keep the cores), and the rest of the batch half a second: the acknowledgement
comes well inside it unless the machine stalls for that long.
"""

from __future__ import annotations

import os
import time
from typing import Any

import faust

import streams.processing
from dispatchwire.settings import Settings
from streams.app import create_faust_app


def main() -> None:
    extra_s = float(os.environ["SLOW_FIX_S"])
    decide_fix = streams.processing.decide_fix

    def slow_decide_fix(*args: Any) -> Any:
        time.sleep(extra_s)
        return decide_fix(*args)

    streams.processing.decide_fix = slow_decide_fix
    app = create_faust_app(Settings())
    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
