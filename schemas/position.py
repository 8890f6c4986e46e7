"""A position in the partitioned event log: for each partition, the next offset to read.

``dispatch.events`` has several partitions, so a position is a vector, partition 0 first.
Its one written form is the offsets joined by dots: ``"12.0.7.3"``. Every place that shows
or takes a position uses it: the live stream's ids (the position *after* the message, so
the id a client sends back says exactly which records of every partition it has), the
replay stream's ids and its ``from_position`` / ``to_position``, ``/api/state``'s
``position``, ``X-Log-Position``, snapshot stamps and the CLI's ``--from-position``. So a
position copied from any of them works in all of them.

``Position.parse`` also takes partition:offset pairs (``"0:12,1:0,2:7"``, the form the CLI
and the replay used to write); a partition the pairs do not name is at offset 0.

A position with fewer entries than the topic has partitions is ``pad``-ded with zeros (a
new partition starts at offset 0). As a window's stop (``analytics.logio.Window``), the
partitions past its end mean "to the log's end", as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MAX_LENGTH = 1_000  # characters; ~500 partitions, far above any topic of ours

_HINT = "offsets per partition joined by dots, e.g. 120.98, or pairs such as 0:120,1:98"


def _number(text: str) -> bool:
    # isdigit() alone takes "²" and other digits int() refuses
    return text.isascii() and text.isdigit()


def format_position(offsets: Mapping[int, int] | Iterable[int]) -> str:
    """The one written form: ``"12.0.7"``. A mapping (partition to offset) is written for
    partitions 0..max, a partition it lacks at offset 0."""
    if isinstance(offsets, Mapping):
        offsets = Position.of(offsets)
    return ".".join(map(str, offsets))


class Position(tuple[int, ...]):
    """The next offset per partition, partition 0 first; a tuple, so it compares, indexes
    and unpacks as one."""

    __slots__ = ()

    def __new__(cls, offsets: Iterable[int] = ()) -> Position:
        return super().__new__(cls, offsets)

    @classmethod
    def of(cls, offsets: Mapping[int, int]) -> Position:
        """From partition -> offset (a partition not named is at 0)."""
        if not offsets:
            return cls()
        return cls(offsets.get(p, 0) for p in range(max(offsets) + 1))

    @classmethod
    def parse(cls, text: str) -> Position:
        """The position ``text`` writes; ``ValueError`` saying what is wrong."""
        if len(text) > MAX_LENGTH:
            raise ValueError(f"a log position is at most {MAX_LENGTH} characters")
        text = text.strip()
        if not text:
            raise ValueError(f"empty; expected a log position ({_HINT})")
        if ":" not in text and "," not in text:
            parts = text.split(".")
            if not all(_number(p) for p in parts):
                raise ValueError(f"{text!r} is not a log position ({_HINT})")
            return cls(int(p) for p in parts)
        pairs: dict[int, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            partition, sep, offset = part.partition(":")
            if not sep or not _number(partition) or not _number(offset):
                raise ValueError(f"{part!r} is not partition:offset ({_HINT})")
            p = int(partition)
            if p in pairs:
                raise ValueError(f"partition {p} is named twice")
            if p >= MAX_LENGTH // 2:
                raise ValueError(f"partition {p} is beyond any topic of ours")
            pairs[p] = int(offset)
        if not pairs:
            raise ValueError(f"empty; expected a log position ({_HINT})")
        return cls.of(pairs)

    @classmethod
    def parse_id(cls, text: str | None) -> Position | None:
        """The position an event id (``Last-Event-ID``) names, or None if it is not one."""
        if not text:
            return None
        try:
            return cls.parse(text)
        except ValueError:
            return None

    def pad(self, partitions: int) -> Position | None:
        """Stretched to ``partitions`` entries (a new partition starts at 0); None if it
        names more partitions than the topic has."""
        if len(self) > partitions:
            return None
        return Position((*self, *(0,) * (partitions - len(self))))

    def get(self, partition: int, default: int) -> int:
        """The offset of ``partition``, or ``default`` past the entries this position has."""
        return self[partition] if 0 <= partition < len(self) else default

    def __str__(self) -> str:
        return ".".join(map(str, self))

    def __repr__(self) -> str:
        return f"Position({str(self)!r})"
