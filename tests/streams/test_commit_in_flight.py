"""A rebalance while a commit is in flight commits what was acked after it (``streams.offsets``,
repair 5).

Faust commits on revocation (``Consumer.wait_empty``), but only after its consumer has
dropped the revoked partitions' acked offsets, and a commit asked for while another is in
flight waits for that one and then does nothing (``maybe_wait_for_commit_to_finish``): the
offsets acked after the last commit took its snapshot stayed uncommitted through the
rebalance, and the partition's next owner got those commands again and published their
events a second time (the same ids: consumers dedupe them, but every rebalance cost up to a
commit interval of copies). Either half of the repair alone still fails here, as the held
commit is in flight when the revocation comes. Here the worker's commits are held
(``tests/streams/deaf_worker.py``, ``DEAF_ONLY``) while a report is acked, a rebalance is
asked for, and the held commit is let go once the revocation waits on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.streams.conftest import fresh_settings
from tests.streams.helpers import Commands, EventLog, scripted_worker
from tests.streams.test_lease_fence import joined_generations
from tests.streams.world import medical_report

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_rebalance_during_a_commit_commits_what_was_acked_after_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = fresh_settings(kafka_bootstrap, tmp_path, tick_seconds=60.0)
    region = settings.regions[0]
    held, rejoin = tmp_path / "hold-commits", tmp_path / "rejoin"
    worker = scripted_worker(
        settings,
        tmp_path / "worker.log",
        "deaf_worker.py",
        {
            "DEAF_MARKER": str(held),
            "DEAF_ONLY": "OffsetCommitRequest",
            "REJOIN_MARKER": str(rejoin),
        },
    )
    commands, events = Commands(settings), EventLog(settings)

    def log() -> str:
        return worker.log_tail(200_000)

    def answer(description: str) -> str:
        report = medical_report(region=region, description=description)
        commands.send(report)
        events.wait_command(report.command_id, timeout=60)
        return report.command_id

    try:
        worker.start()
        answer("committed as usual")
        held.touch()
        answer("acked; its commit is held in flight")
        wait_for(
            lambda: "DEAF: OffsetCommitRequest held" in log(),
            timeout=30,
            message="the worker's next commit to be held",
        )
        after = answer("acked after the held commit took its offsets")
        revoking = log().count("Revoking previously assigned partitions")
        rejoin.touch()
        wait_for(
            lambda: log().count("Revoking previously assigned partitions") > revoking,
            timeout=30,
            message="the revocation (which commits, or waits on the held commit)",
        )
        held.unlink()
        wait_for(lambda: len(joined_generations(log())) >= 2, timeout=60, message="the rejoin")
        last = answer("after the rebalance")
        events.poll()
        copies = {cid: len(events.for_command(cid)) for cid in (after, last)}
        print(f"events per report: {copies}")
        assert copies[after] == 1, (
            "the report acked during the held commit came again after the rebalance"
        )
    finally:
        worker.kill()
        commands.close()
        events.close()
