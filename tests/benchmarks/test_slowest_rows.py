"""``e2e.slowest_rows``: the fleet bench's slowest reports, each through every hop."""

from __future__ import annotations

from tests.benchmarks import e2e

EDGES = ("command_ts", "command_seen", "event_ts", "event_seen", "first", "median", "last")


def traced(total_s: dict[int, float]) -> tuple[dict, dict]:
    """A load-client result and a Watch's ``seen`` for reports sent a second apart, report
    ``seq`` reaching its median client ``total_s[seq]`` after it was sent, its time spread
    evenly over the six hops up to there (the last client 1 ms after the median)."""
    per_seq, seen = {}, {}
    for seq, total in total_s.items():
        sent = 100.0 + seq
        step = total / 6
        at = {edge: sent + step * (i + 1) for i, edge in enumerate(EDGES[:6])}
        at["last"] = at["median"] + 0.001
        per_seq[seq] = [sent, at["first"], at["median"], at["last"], 10]
        seen[f"t-{seq}"] = {edge: at[edge] for edge in EDGES[:4]}
    result = {"tag": "t", "wall_minus_perf": 0.0, "phases": {"reach": {"per_seq": per_seq}}}
    return result, seen


def test_the_slowest_reports_come_first_with_every_hop() -> None:
    result, seen = traced({0: 0.030, 1: 0.120, 2: 0.060, 3: 0.090, 4: 0.012})
    rows = e2e.slowest_rows("fleet slowest", {}, result, seen)
    assert [r.subject for r in rows] == [f"slowest report {k}" for k in (1, 2, 3)]
    assert [r.metrics["sent at s"] for r in rows] == [1.0, 3.0, 2.0]
    assert [r.metrics["total to the median client ms"] for r in rows] == [120.0, 90.0, 60.0]
    slowest = rows[0].metrics
    assert set(slowest) == {"sent at s"} | {f"{label} ms" for label, _, _ in e2e.HOPS}
    assert slowest["worker: fetch, batch, decide, produce ms"] == 20.0
    assert slowest["fan-out: first -> last client ms"] == 21.0


def test_no_traced_report_gives_no_rows() -> None:
    result, _ = traced({0: 0.030})
    assert e2e.slowest_rows("fleet slowest", {}, result, {}) == []
