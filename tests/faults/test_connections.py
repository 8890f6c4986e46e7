"""A Kafka client connecting to a silent node still connects to the others meanwhile
(``streams.connections``).

The regression: in about one run in ten of the paused-node cluster case no command was
answered for (nearly) the whole pause. aiokafka makes every new connection of a client under
one lock, and a connection to a SIGSTOPped broker waits out the whole request timeout; the
workers' fetchers kept trying to reach the paused node, and their group coordinators'
connections to the group's new coordinator waited behind each attempt. Here, on three real
KRaft nodes of the test's own, one node is SIGSTOPped and a connection to it is started; a
connection to a healthy node must be made while that one still waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.client import AIOKafkaClient, ConnectionGroup

from streams import connections
from tests.conftest import _interrupt
from tests.faults.stack import FaultCluster

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.faults]

REQUEST_TIMEOUT_MS = 5_000  # how long a connection to the silent node waits


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    cluster = FaultCluster(Path(tmp_path_factory.mktemp("silent-node")) / "kafka")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()  # resumes a paused node first
        signal.signal(signal.SIGTERM, previous)


def connecting(client: AIOKafkaClient) -> bool:
    """Whether a connection of ``client`` is being made (its lock held): aiokafka's one
    lock, or one of ``streams.connections``'."""
    locks = list(client.__dict__.get(connections.LOCKS, {}).values())
    if client._get_conn_lock_value is not None:
        locks.append(client._get_conn_lock_value)
    return any(lock.locked() for lock in locks)


def test_a_connection_to_a_silent_node_holds_up_no_other(three_nodes: FaultCluster) -> None:
    connections.install()  # as the worker does (streams.app)

    async def connect() -> tuple[bool, bool, bool]:
        client = AIOKafkaClient(
            bootstrap_servers=three_nodes.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS
        )
        await client.bootstrap()
        try:
            silent, healthy = sorted(b.nodeId for b in client.cluster.brokers())[:2]
            three_nodes.signal(silent, signal.SIGSTOP)
            try:
                waiting = asyncio.ensure_future(client.ready(silent))
                for _ in range(100):  # until it holds a lock and waits for the node
                    if connecting(client):
                        break
                    await asyncio.sleep(0)
                assert connecting(client)
                # what the group coordinator does after a heartbeat timed out
                other = await client.ready(healthy, group=ConnectionGroup.COORDINATION)
                still_waiting = not waiting.done()
                reached_silent = await waiting
            finally:
                with contextlib.suppress(ProcessLookupError):
                    three_nodes.signal(silent, signal.SIGCONT)
            return other, still_waiting, reached_silent
        finally:
            await client.close()

    other, still_waiting, reached_silent = asyncio.run(connect())
    assert other, "the healthy node's connection was not made"
    assert still_waiting, "the healthy node's connection waited for the silent node's"
    assert not reached_silent  # the silent node's connection timed out, as before
