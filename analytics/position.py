"""A position in the partitioned event log: the next offset to read, per partition.

Written as ``"0:120,1:98"`` (partition:offset pairs, partitions ascending) in snapshot
stamps, CLI flags and replay query strings, so one string names one point of the log.
The live stream's ids and ``/api/state``'s ``position`` write the same thing as offsets
in partition order joined by dots (``"120.98"``, see ``api/position.py``); ``parse_position``
takes that form too, so an operator can paste a position from the dashboard into a replay.
"""

from __future__ import annotations

from collections.abc import Mapping

Position = dict[int, int]


def format_position(position: Mapping[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(position.items()))


def parse_position(text: str) -> Position:
    """Parse ``"0:120,1:98"`` or the live-id form ``"120.98"``; raises ValueError saying
    what is wrong."""
    text = text.strip()
    if text and ":" not in text and "," not in text:
        offsets = text.split(".")
        if not all(o.isdigit() for o in offsets):
            raise ValueError(f"{text!r} is neither partition:offset pairs nor a live id "
                             "(e.g. 0:120,1:98 or 120.98)")
        return {p: int(o) for p, o in enumerate(offsets)}
    position: Position = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        partition, sep, offset = part.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"{part!r} is not partition:offset (e.g. 0:120,1:98)")
        position[int(partition)] = int(offset)
    if not position:
        raise ValueError("empty position; expected partition:offset pairs such as 0:120,1:98")
    return position
