"""``streams.progress.ProgressWatch``: which owned partitions count as stalled (issue 14)."""

from __future__ import annotations

from streams.progress import ProgressWatch

P0, P1 = ("commands", 0), ("commands", 1)


def test_a_partition_behind_and_unmoved_for_the_timeout_is_stalled() -> None:
    watch = ProgressWatch(timeout_s=30.0)
    watch.observe(100.0, {P0: (5, True), P1: (7, True)})
    watch.observe(120.0, {P0: (5, True), P1: (9, True)})  # P1 moved
    assert watch.stalled(129.0) == {}
    assert watch.stalled(130.0) == {P0: 30.0}
    watch.observe(131.0, {P0: (6, True), P1: (9, True)})  # P0 moved: its clock restarts
    assert watch.stalled(149.0) == {}
    assert watch.stalled(150.0) == {P1: 30.0}


def test_a_partition_not_behind_or_no_longer_owned_is_never_stalled() -> None:
    watch = ProgressWatch(timeout_s=30.0)
    watch.observe(100.0, {P0: (5, False), P1: (7, True)})
    watch.observe(140.0, {P0: (5, False)})  # idle and caught up; P1 was revoked
    assert watch.stalled(140.0) == {}
    assert watch.stalled(169.0) == {}


def test_a_rebalance_is_asked_for_at_most_once_per_timeout() -> None:
    watch = ProgressWatch(timeout_s=30.0)
    assert watch.may_rejoin(100.0)
    assert not watch.may_rejoin(129.0)
    assert watch.may_rejoin(130.0)


def test_a_zero_timeout_turns_the_guard_off() -> None:
    watch = ProgressWatch(timeout_s=0.0)
    watch.observe(0.0, {P0: (5, True)})
    assert watch.stalled(1_000.0) == {}
