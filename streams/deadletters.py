"""Dead letters: a command the worker cannot apply goes to ``dispatch.commands.dlq``, and is
acked only once the dead-letter topic has it (issue 10, item 4).

The probe's 1.04 MB undecodable record never arrived there: Faust's producer refuses requests
over 1,000,000 bytes (``producer_max_request_size``), the send failed in the background, and
the record was acked anyway. Now:

- A dead letter carries at most ``DEAD_LETTER_MAX_VALUE_BYTES`` of the record's value (and
  ``DEAD_LETTER_MAX_KEY_BYTES`` of its key); its headers say why (``error``), where it came
  from (``original-topic``, ``original-partition``, ``original-offset``) and how big it was
  (``original-size``; ``truncated`` holds the kept length when it was cut). A dead letter is
  for finding and diagnosing the record; the whole of it stays on the commands topic.
- The send is awaited. If it fails, the record is not acked: the worker logs the reason and
  tries again (backing off up to ``RETRY_MAX_S``) for as long as the partition is still its
  own, holding the agent (commands are applied in order, so nothing behind the record may be
  acked either). If a rebalance or a shutdown begins first, it gives up with
  ``DeadLetterNotSent``: the record and every later one of that partition in that assignment
  are released unacked (``release``), so the committed offset stays at the record and the
  partition's next owner reads it again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

# 64 KiB of a poison record is plenty to find and read it, far below any producer limit.
DEAD_LETTER_MAX_VALUE_BYTES = 64 * 1024
DEAD_LETTER_MAX_KEY_BYTES = 1024
ERROR_MAX_BYTES = 1000
# A failed dead-letter send is tried again after 0.5 s, 1 s, 2 s, ... at most this long.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


class DeadLetterNotSent(Exception):
    """The partition was revoked or the worker stopped before the dead letter was sent."""


def dead_letter(message: Any, error: str) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of the dead letter for a Faust ``message`` (its record)."""
    key, value = message.key, message.value or b""
    if isinstance(value, str):
        value = value.encode()
    headers = [
        ("error", error.encode("utf-8", "replace")[:ERROR_MAX_BYTES]),
        ("original-topic", message.topic.encode()),
        ("original-partition", str(message.partition).encode()),
        ("original-offset", str(message.offset).encode()),
        ("original-size", str(len(value)).encode()),
    ]
    if len(value) > DEAD_LETTER_MAX_VALUE_BYTES:
        value = value[:DEAD_LETTER_MAX_VALUE_BYTES]
        headers.append(("truncated", str(DEAD_LETTER_MAX_VALUE_BYTES).encode()))
    if key is not None and len(key) > DEAD_LETTER_MAX_KEY_BYTES:
        headers.append(("original-key-size", str(len(key)).encode()))
        key = key[:DEAD_LETTER_MAX_KEY_BYTES]
    return key, value, headers


async def forward(app: Any, topic: str, event: Any, error: str) -> None:
    """Send the dead letter of ``event`` to ``topic`` and wait until the broker has it.

    Raises ``DeadLetterNotSent`` if the partition stops being ours (or the worker stops)
    before a send succeeds."""
    message = event.message
    size = len(message.value or b"")
    key, value, headers = dead_letter(message, error)
    delay = RETRY_FIRST_S
    while True:
        try:
            await app.producer.send_and_wait(topic, key, value, None, None, headers)
            return
        except Exception as exc:  # any failure: the record must stay unacked
            # A rebalance or a shutdown stops the consumer's flow first, and then waits
            # for the messages the streams hold: give this one back rather than block it.
            owned = (
                message.generation_id == app.consumer_generation_id
                and app.consumer.flow_active
                and not app.should_stop
            )
            log.error(
                "dead letter of %s[%s]@%s (%d bytes) not sent to %s: %r; the record is "
                "not acked, %s",
                message.topic,
                message.partition,
                message.offset,
                size,
                topic,
                exc,
                f"retrying in {delay:.1f}s"
                if owned
                else "its partition's next owner reads it again",
            )
            if not owned:
                raise DeadLetterNotSent(
                    f"{message.topic}[{message.partition}]@{message.offset}"
                ) from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)


def release(app: Any, event: Any) -> None:
    """Let go of ``event`` without acking it: Faust stops waiting for it (a rebalance or a
    shutdown waits for every message a stream took), but its offset is never marked done,
    so it is not committed."""
    app.consumer.unacked.discard(event.message)
