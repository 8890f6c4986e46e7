"""Log positions of ``dispatch.events``, as the ``id`` of every live message.

``dispatch.events`` has several partitions, so a position is a vector: for each
partition, the offset of the next record not yet reflected. It is written compactly as
the offsets joined by dots (``"12.0.7.3"``, partition 0 first). A message's id is the
position *after* it, so a client that sends back the id of the last message it saw has
told us exactly which records of every partition it already has.
"""

from __future__ import annotations

Position = tuple[int, ...]

MAX_ID_LENGTH = 1_000


def encode_position(offsets: Position | list[int]) -> str:
    return ".".join(map(str, offsets))


def decode_position(text: str | None) -> Position | None:
    """The position an id encodes, or None if it is not one of ours."""
    if not text or len(text) > MAX_ID_LENGTH:
        return None
    parts = text.strip().split(".")
    # isdigit() alone takes "²" and other digits int() refuses
    if not all(p.isascii() and p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def pad(position: Position, partitions: int) -> Position | None:
    """``position`` stretched to ``partitions`` entries (a new partition starts at 0);
    None if it names more partitions than the topic has."""
    if len(position) > partitions:
        return None
    return position + (0,) * (partitions - len(position))
