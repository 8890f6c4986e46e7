"""Logging, configured once at the entry point."""

from __future__ import annotations

import logging
import os
import time

# Known transients of a fresh broker, logged at ERROR by a client library although the
# client retries and goes on. During start-up (the first ``STARTUP_S`` seconds after
# ``configure``) they are logged at INFO, so a real error stands out on the first screen;
# later they keep their level, because then they mean the broker is in trouble.
STARTUP_S = 60.0
STARTUP_TRANSIENTS = {
    # aiokafka asks for its group coordinator while the broker still creates
    # __consumer_offsets (``dispatchwire run`` waits for it first; a part started on its
    # own may still meet it)
    "aiokafka.consumer.group_coordinator": ("GroupCoordinatorNotAvailableError",),
}


class StartupTransients(logging.Filter):
    """Logs a known start-up transient at INFO during start-up instead of ERROR."""

    def __init__(self, needles: tuple[str, ...], until: float) -> None:
        super().__init__()
        self.needles = needles
        self.until = until

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO and time.monotonic() < self.until:
            message = record.getMessage()
            if any(needle in message for needle in self.needles):
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.msg, record.args = f"{message} (normal while the broker starts)", ()
        return True


def configure(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("DISPATCHWIRE_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    until = time.monotonic() + STARTUP_S
    for name, needles in STARTUP_TRANSIENTS.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, StartupTransients)]:
            logger.removeFilter(old)
        logger.addFilter(StartupTransients(needles, until))
