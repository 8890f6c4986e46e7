"""Issue 16: a read-model checkpoint is gzipped by its writer in a thread, not by the Kafka
producer on the API's event loop (a stall of ~15 ms a minute for a city's fleet, ~65 ms for
a year's state). What must hold: a packed checkpoint reads back as it was, one written
before (plain JSON) still reads, and a record that would inflate past the limit is refused
before it is inflated. The broker round trip is ``test_readmodel_checkpoint.py``'s."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import pytest

import api.checkpoint as checkpoint_module
from api.checkpoint import GZIP_MAGIC, Checkpoint, TooLarge, Unusable, pack, unpack
from schemas.entities import Unit, UnitType
from schemas.position import Position


def fleet_checkpoint(units: int = 300) -> Checkpoint:
    fleet = tuple(
        Unit(
            id=f"unit-{i:04d}",
            callsign=f"A{i}",
            type=UnitType.AMBULANCE,
            region="hki-nw",
            lat=60.17 + i * 1e-4,
            lon=24.94,
            version=i + 1,
        )
        for i in range(units)
    )
    return Checkpoint(
        events_topic="dispatch.events",
        position=Position([1200, 7]),
        last=((123, 1_700_000_000_000), None),
        emergencies=(),
        units=fleet,
        archived=(),
        written_at=datetime(2026, 11, 30, tzinfo=UTC),
        writer="host:1",
    )


def test_a_packed_checkpoint_is_gzip_and_reads_back_as_it_was():
    checkpoint = fleet_checkpoint()
    size, value = pack(checkpoint)
    assert value.startswith(GZIP_MAGIC) and len(value) < size / 4
    assert size == len(checkpoint.encode())
    assert Checkpoint.decode(value) == checkpoint


def test_a_checkpoint_written_before_as_plain_json_still_reads():
    checkpoint = fleet_checkpoint(20)
    assert Checkpoint.decode(checkpoint.encode()) == checkpoint


def test_a_record_inflating_past_the_limit_is_refused_not_inflated(monkeypatch):
    monkeypatch.setattr(checkpoint_module, "CHECKPOINT_MAX_BYTES", 10_000)
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")  # 5 MB of JSON in ~5 KB
    with pytest.raises(Unusable, match="over 10000 bytes"):
        unpack(bomb)
    with pytest.raises(Unusable, match="not gzip"):
        unpack(GZIP_MAGIC + b"not a gzip stream at all")
    with pytest.raises(TooLarge):
        pack(fleet_checkpoint(100))  # its JSON is over the limit: not written
