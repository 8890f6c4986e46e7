"""A position pasted from the live stream (an SSE id, ``/api/state``'s ``position``) names
the same point of the log in a replay as the partition:offset form."""

from __future__ import annotations

import pytest

from analytics.position import format_position, parse_position
from api.position import encode_position


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0:120,1:98", {0: 120, 1: 98}),
        ("120.98", {0: 120, 1: 98}),
        ("7", {0: 7}),
        (encode_position((3, 0, 11, 4)), {0: 3, 1: 0, 2: 11, 3: 4}),
    ],
)
def test_both_forms_parse_to_the_same_position(text: str, expected: dict[int, int]) -> None:
    assert parse_position(text) == expected
    assert parse_position(format_position(expected)) == expected


@pytest.mark.parametrize("text", ["", "1.x", "0:1,abc", "1..2", "0-5"])
def test_malformed_positions_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_position(text)
