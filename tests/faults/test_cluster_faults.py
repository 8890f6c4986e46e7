"""Faults under load on a cluster (issue 14, item 5): the fault suite's load driver, live
clients and auditor against three KRaft nodes of their own (replication factor 3,
min.insync.replicas 2, acks=all), two workers in one consumer group with standby replicas,
and two API replicas. The load goes to both replicas; the live clients start on the first
and move to the other when a connection fails (``LiveClients(replicas=...)``).

The short worker case runs in ``make test``; the others need ``make soak-cluster``
(``DISPATCHWIRE_SOAK_SECONDS``): three JVMs, two workers and two APIs on a loaded 2-core
machine take minutes per case.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import signal
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from schemas.placement import partition_for
from streams.app import REQUEST_TIMEOUT_S, SESSION_TIMEOUT_S
from tests.conftest import wait_for
from tests.faults.clients import LiveClients
from tests.faults.conftest import soak_seconds
from tests.faults.driver import ANSWERED, LoadDriver
from tests.faults.report import CaseRow
from tests.faults.stack import ClusterStack
from tests.faults.test_faults import assert_green, load_for, phase_s, recovery, settle_and_audit

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(900)]

soak_only = pytest.mark.skipif(not soak_seconds(), reason="cluster soak case: make soak-cluster")


def replicated_load(
    stack: ClusterStack, seed: int, sse: int, ws: int
) -> tuple[LoadDriver, LiveClients]:
    """Commands to both API replicas in turn; live clients on the first replica."""
    first, *others = stack.urls
    clients = LiveClients(first, sse=sse, ws=ws, replicas=tuple(others)).start()
    driver = LoadDriver(first, seed=seed, replicas=tuple(others)).start()
    wait_for(clients.connected, timeout=90, message="the live clients' snapshots")
    return driver, clients


class TakeoverStalled(AssertionError):
    """The surviving worker owns the dead one's partitions but answers none of their
    commands (found by this case; see the marker)."""


def answered_in(driver: LoadDriver, regions: list[str], timeout: float = 60.0) -> float | None:
    """Send one report per region (retried, same id, until answered) and return when the
    last of them was answered (monotonic), or None if one was not answered in ``timeout``
    (its retries go on: the audit still wants its outcome)."""
    futures = [driver.submit(driver.report(in_region=region)) for region in regions]
    deadline = time.monotonic() + timeout
    answered = []
    for future in futures:
        try:
            sent = future.result(max(deadline - time.monotonic(), 0.1))
        except concurrent.futures.TimeoutError:
            return None
        if sent.answered is None:  # still waiting for an outcome, never refused
            final = sent.final
            assert final is None or final.status in (0, 202, 503), f"probe refused: {final}"
            return None
        answered.append(sent.answered.at)
    return max(answered)


def busiest_partition(stack: ClusterStack) -> int:
    """The events partition with the most records now."""
    topic = stack.settings.events_topic
    consumer = KafkaConsumer(bootstrap_servers=stack.cluster.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(stack.settings.partitions)]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    return max(ends, key=lambda tp: ends[tp]).partition


def longest_unanswered(driver: LoadDriver, since: float, until: float) -> float:
    """The longest time between ``since`` and ``until`` in which no command was answered."""
    answered = sorted(
        a.at
        for c in driver.sent
        for a in c.attempts
        if a.status in ANSWERED and since < a.at <= until
    )
    edges = [since, *answered, until]
    return max(b - a for a, b in itertools.pairwise(edges))


# The takeover stall (issue 14, item 3), seen by the scale benchmark's takeover on one broker
# in 2 runs of 4 (standby replicas 1 and 0): the survivor's ready page listed all four
# partitions, but the commands of the partitions it gained got no outcome for 90-180 s
# (their events partitions stayed where they were; its own went on); in the other two runs
# it took over in 16.2 s and 18.6 s. A like stall showed once at start-up: a worker that
# gained partitions in a second rebalance waited minutes for their changelog ("No event
# received for active tp ... since recovery start"). On the cluster this case took over in
# 10.5 s (see the README). Not fixed yet (README, known gaps); faust-streaming#629
# reports the same symptom with aiokafka. Not every run shows it: the marker is not strict.
# Since the stall guard (streams/progress.py) a stalled survivor asks its group to
# rebalance after worker_stall_timeout_s (30 s), inside this case's 60 s: a stall now
# shows here as a slow takeover and in the survivor's log ("worker stalled: ...").
@pytest.mark.xfail(
    raises=TakeoverStalled,
    strict=False,
    reason="the surviving worker does not process the partitions it gains",
)
def test_cluster_worker_sigkill_other_takes_over(cluster: ClusterStack, record_row) -> None:
    """SIGKILL one of two workers under load: the other takes its partitions over (from its
    warm standby copy of their table) and answers commands for its regions again."""
    settings = cluster.settings
    driver, clients = replicated_load(cluster, seed=21, sse=4, ws=1)
    try:
        load_for(driver, phase_s(2.0))
        group = cluster.workers
        victim = next(w for w in group.members if group.partitions(w))
        survivor = next(w for w in group.members if w is not victim)
        moved = group.partitions(victim)
        regions = [
            r
            for r in settings.regions
            if partition_for(r, settings.partitions, settings.regions) in moved
        ]
        assert regions, f"no region on the victim's partitions {moved}"
        victim.kill()
        killed_at = time.monotonic()
        answered_at = answered_in(driver, regions)
        takeover = None if answered_at is None else answered_at - killed_at
        page = group.ready_page(survivor)
        owned_after = page.get("partitions")
        survivor_reason = page.get("reason", "ready")
        if takeover is not None:
            load_for(driver, phase_s(2.0))
        cluster.workers.start()  # the group splits the partitions again
        load_for(driver, phase_s(1.0))
        audit = settle_and_audit(cluster, driver, clients)
    finally:
        driver.stop()
        clients.stop()
    record_row(
        CaseRow(
            "cluster: worker SIGKILL, other takes over",
            audit.outcomes,
            audit.clients,
            takeover,
            notes=f"partitions {moved} ({', '.join(regions)}) moved; survivor owned "
            f"{owned_after} ({survivor_reason}); standby replicas "
            f"{settings.worker_standby_replicas}; "
            "recovery = takeover"
            + ("" if takeover is not None else " (none in 60 s: victim restarted)"),
        )
    )
    assert_green(audit)
    if takeover is None:
        raise TakeoverStalled(
            f"no outcome for {regions} within 60 s of the SIGKILL; the "
            f"survivor's ready page listed {owned_after} "
            f"({survivor_reason})"
        )


@soak_only
def test_cluster_api_replica_sigkill_clients_move(cluster: ClusterStack, record_row) -> None:
    """SIGKILL the API replica every live client is on: they resume on the other replica
    with their Last-Event-ID, with no gap and no duplicate."""
    sse, ws = (300, 2) if soak_seconds() >= 10 else (40, 2)
    driver, clients = replicated_load(cluster, seed=22, sse=sse, ws=ws)
    try:
        load_for(driver, phase_s(1.0))
        dead = cluster.apis[0]
        dead.kill()
        killed_at = time.monotonic()
        since = [len(r.messages) for r in clients.recordings]

        def all_moved() -> bool:
            return all(
                r.replica == 1 and len(r.messages) > n
                for r, n in zip(clients.recordings, since, strict=True)
            )

        wait_for(
            all_moved,
            timeout=120,
            interval=0.2,
            message="every live client resumed on the other replica",
        )
        moved_s = time.monotonic() - killed_at
        load_for(driver, phase_s(1.0))
        dead.start_ready()
        audit = settle_and_audit(cluster, driver, clients)
    finally:
        driver.stop()
        clients.stop()
    c = audit.clients
    assert c is not None
    record_row(
        CaseRow(
            f"cluster: API replica SIGKILL, {sse} SSE + {ws} WS",
            audit.outcomes,
            c,
            recovery(driver, killed_at, killed_at),
            notes=f"all clients resumed on the other replica in {moved_s:.1f} s; "
            f"reconnects {c.reconnects}",
        )
    )
    assert_green(audit)


@soak_only
def test_cluster_sigkill_leader_of_busiest_partition(cluster: ClusterStack, record_row) -> None:
    """SIGKILL the node leading the busiest events partition: a new leader is elected from
    the in-sync replicas and nothing acknowledged is lost or doubled."""
    driver, clients = replicated_load(cluster, seed=23, sse=4, ws=1)
    try:
        load_for(driver, phase_s(2.0))
        partition = busiest_partition(cluster)
        node = cluster.cluster.leader(cluster.settings.events_topic, partition)
        cluster.cluster.kill(node)
        killed_at = time.monotonic()

        def new_leader() -> bool:
            try:
                return cluster.cluster.leader(cluster.settings.events_topic, partition) != node
            except (KafkaError, OSError, StopIteration):  # no answer while it is elected
                return False

        wait_for(new_leader, timeout=60, interval=0.2, message="a new leader")
        elected_s = time.monotonic() - killed_at
        load_for(driver, phase_s(2.0))
        restarted_s = cluster.cluster.restart_dead()
        load_for(driver, phase_s(1.0))
        audit = settle_and_audit(cluster, driver, clients)
    finally:
        driver.stop()
        clients.stop()
    record_row(
        CaseRow(
            f"cluster: SIGKILL of node {node}, leader of events/{partition}",
            audit.outcomes,
            audit.clients,
            recovery(driver, killed_at, killed_at),
            notes=f"new leader in {elected_s:.1f} s; node back in {restarted_s:.1f} s",
        )
    )
    assert_green(audit)


@soak_only
def test_cluster_broker_paused_past_session_timeout(cluster: ClusterStack, record_row) -> None:
    """SIGSTOP the node coordinating the workers' group for longer than the workers' request
    timeouts, then SIGCONT it: it is fenced, the others answer while it is still silent, it
    comes back and catches up; nothing acknowledged lost or doubled."""
    pause_s = max(3 * REQUEST_TIMEOUT_S, phase_s(15.0))
    driver, clients = replicated_load(cluster, seed=24, sse=4, ws=1)
    try:
        load_for(driver, phase_s(2.0))
        # the node the workers' group heartbeats and commits to: the worst one to lose
        node = cluster.cluster.group_coordinator(cluster.settings.app_id)
        leaders = cluster.cluster.leaders(cluster.settings.commands_topic)
        led = sorted(p for p, leader in leaders.items() if leader == node)
        cluster.cluster.pause(node)
        paused_at = time.monotonic()
        try:
            load_for(driver, pause_s)
        finally:
            cluster.cluster.signal(node, signal.SIGCONT)
        resumed_at = time.monotonic()
        wanted = {n.node_id for n in cluster.cluster.cluster.nodes}
        wait_for(
            lambda: cluster.cluster.cluster.brokers_in_metadata() == wanted,
            timeout=120,
            interval=0.5,
            message="the paused node back in the metadata",
        )
        silent_s = longest_unanswered(driver, paused_at, resumed_at)
        back_s = time.monotonic() - resumed_at
        load_for(driver, phase_s(2.0))
        audit = settle_and_audit(cluster, driver, clients)
    finally:
        driver.stop()
        clients.stop()
    record_row(
        CaseRow(
            f"cluster: node {node} SIGSTOP {pause_s:.0f} s",
            audit.outcomes,
            audit.clients,
            recovery(driver, paused_at, paused_at),
            notes=f"coordinator of the workers' group, leader of commands {led}; longest "
            f"unanswered while paused {silent_s:.1f} s; unfenced {back_s:.1f} s after SIGCONT",
        )
    )
    assert_green(audit)
    # The silent node is fenced after the nodes' 3 s session. What the workers had in flight
    # to it (heartbeats and commits to their group's coordinator, produce requests) fails
    # after their request timeout and goes to the nodes that took over; one such request may
    # meet the silent node once more (a reconnect, a metadata refresh). Before the worker's
    # request timeouts were bounded (Faust's 90 s and 1,200 s) the workers waited for the
    # silent node, and nothing was answered until it was back, or for 90 s and more.
    bound_s = 2 * REQUEST_TIMEOUT_S + SESSION_TIMEOUT_S
    assert silent_s <= bound_s, (
        f"no command answered for {silent_s:.1f} s after node {node} stopped (bound {bound_s} s)"
    )
