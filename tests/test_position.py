"""The one log position type (``schemas.position``): every written form, the malformed."""

from __future__ import annotations

import pytest

from schemas.position import MAX_LENGTH, Position, format_position


@pytest.mark.parametrize(
    ("text", "offsets"),
    [
        ("12.0.7", (12, 0, 7)),  # live ids, /api/state, X-Log-Position, snapshot stamps
        ("0", (0,)),
        (" 3.4 ", (3, 4)),
        ("0:120,1:98", (120, 98)),  # partition:offset pairs, as the CLI wrote them before
        ("1:98,0:120", (120, 98)),
        ("0:5,", (5,)),
        ("2:7", (0, 0, 7)),  # a partition not named is at offset 0
        ("3:1", (0, 0, 0, 1)),  # a replay id of the old form names the position after nothing
        ("9" * 30, (int("9" * 30),)),
    ],
)
def test_forms_parse_to_one_position(text: str, offsets: tuple[int, ...]) -> None:
    position = Position.parse(text)
    assert position == offsets
    assert Position.parse(str(position)) == position  # the canonical form round-trips
    assert str(position) == format_position(offsets) == ".".join(map(str, offsets))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a.1",
        "1..2",
        ".1",
        "1.",
        "-1.2",
        "+1",
        "1.x",
        "0:1,abc",
        "0-5",
        "0:",
        ":5",
        "0:1:2",
        "0:1,0:2",
        "²",
        "1.²",
        "0:²",
        "²:0",
        "١٢",
        "1 .2",
        "0x10",
        "1e3",
        "1_000",
        "999:1",
        "1" * (MAX_LENGTH + 1),
        "1." * 600,
    ],
)
def test_malformed_positions_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Position.parse(text)
    assert Position.parse_id(text) is None


def test_parse_id_takes_none_and_every_form() -> None:
    assert Position.parse_id(None) is None
    assert Position.parse_id("4.5") == Position.parse_id("0:4,1:5") == (4, 5)


def test_pad_get_and_mapping() -> None:
    assert Position((1, 2)).pad(3) == (1, 2, 0) and Position((1, 2, 3)).pad(2) is None
    assert isinstance(Position((1,)).pad(2), Position)
    assert Position((5, 6)).get(1, -1) == 6 and Position((5, 6)).get(2, -1) == -1
    assert Position.of({1: 4, 0: 3}) == (3, 4) and Position.of({}) == ()
    assert format_position({2: 9, 0: 1}) == "1.0.9"
    assert repr(Position((1, 2))) == "Position('1.2')"
