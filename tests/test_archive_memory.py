"""The read model's archive memory (issue 16) is bounded by each region's own clock, so
what a fold remembers does not depend on how it interleaved the partitions.

Found by the 365-day year bench: a cold API restored a checkpoint holding 57,747 archived
emergencies (16 MB, API RSS 2.2x the first day's) where the 7-day memory holds about
8,000. A whole-log fold can read one partition far ahead of another; with one queue for
every region a lagging partition's archive events queued behind a leading one's newer
head, and nothing behind that head was forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.checkpoint import Checkpoint
from schemas.entities import EmergencyStatus
from schemas.events import EmergencyArchived
from schemas.projection import Projection

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REGIONS = ("north", "south", "east", "west")
DAYS = 30
MEMORY = timedelta(days=7)
PER_SWEEP = 2  # per region every 10 minutes: ~1,150 archived a day


def archives() -> dict[str, list[EmergencyArchived]]:
    """Each region's archive events of ``DAYS`` days, in its partition's order."""
    out: dict[str, list[EmergencyArchived]] = {r: [] for r in REGIONS}
    n = 0
    for minute in range(0, DAYS * 24 * 60, 10):
        at = T0 + timedelta(minutes=minute)
        for region in REGIONS:
            for _ in range(PER_SWEEP):
                n += 1
                out[region].append(
                    EmergencyArchived(
                        event_id=f"sweep-{n}:0",
                        command_id=f"sweep-{n}",
                        region=region,
                        occurred_at=at,
                        emergency_id=f"em-{n}",
                        status=EmergencyStatus.COMPLETED,
                        closed_at=at - timedelta(hours=1),
                    )
                )
    return out


def fold(events: list[EmergencyArchived]) -> Projection:
    projection = Projection(archive_memory=MEMORY)
    for event in events:
        projection.apply(event)
    return projection


def test_the_memory_holds_each_regions_last_days_whatever_the_read_order() -> None:
    by_region = archives()
    interleaved = [e for sweep in zip(*by_region.values(), strict=True) for e in sweep]
    one_partition_after_another = [e for r in REGIONS for e in by_region[r]]

    expected = {
        e.emergency_id
        for events in by_region.values()
        for e in events
        if e.occurred_at >= events[-1].occurred_at - MEMORY
    }
    assert len(expected) < len(interleaved) / 3  # the memory is a quarter of the month
    for order in (interleaved, one_partition_after_another):
        assert set(fold(order).archived) == expected


def test_a_restored_checkpoint_keeps_forgetting_by_region() -> None:
    by_region = archives()
    half = {r: events[: len(events) // 2] for r, events in by_region.items()}
    rest = {r: events[len(events) // 2 :] for r, events in by_region.items()}
    # a checkpoint taken while "north" had been read to the middle and the others not at all
    first = fold(half["north"])
    checkpoint = Checkpoint.capture(first, "events", [0, 0, 0, 0], [None] * 4)
    restored = Checkpoint.decode(checkpoint.encode()).restore(MEMORY)
    assert list(restored.archived) == list(first.archived)
    for region in REGIONS:  # then each partition, one after another, to its end
        for event in (half[region] if region != "north" else []) + rest[region]:
            restored.apply(event)

    whole = fold([e for r in REGIONS for e in by_region[r]])
    assert set(restored.archived) == set(whole.archived)
