"""Which broker node an aiokafka client asks when any node will do: not one that has just
left a request unanswered.

Found by the paused-node cluster case (``tests/faults/test_cluster_faults.py``) once the
connection lock was fixed (``infra.connections``): a worker's heartbeat to the paused
coordinator timed out at 07:20:19.6 (17 s, ``streams.app.REQUEST_TIMEOUT_S``), and its
next word from the group came at 07:20:36.8, one more request timeout later, right after
"Group Coordinator Request failed: RequestTimedOutError" (07:20:36.6). aiokafka finds the
new coordinator by asking a *random* known broker (``AIOKafkaClient.coordinator_lookup``
via ``get_random_node``), and a SIGSTOPped broker keeps the request and never answers: the
paused node was still in the client's metadata, so each lookup had one chance in three to
ask it and wait out the timeout, while heartbeats, the rejoin and the offset commit waited
for the lookup. The Java client sends these requests to its least loaded node, one with no
request in flight and no recent failure.

So here a client remembers each node whose request timed out or to which a connection
could not be made (a new connection to a SIGSTOPped node waits out the request timeout for
the answer to its first request), until a request to it is answered or ``SILENT_FOR_S``
has passed, and ``get_random_node`` (the coordinator lookup's choice) picks among the
other nodes while there are any. The first request to a node that
goes silent still waits out its timeout (that is how it is found silent).

The same case's longest tail (46.6 s unanswered, once in twelve runs) was a produce
request: a batch's request to the paused leader timed out, and the batch went to the same
node again. aiokafka closes a connection whose request timed out and refreshes its metadata,
but the refresh shuffles the known brokers and asks each in turn, so one time in three it
asks the paused node first (a new connection to it waits out another timeout), and the
batch waits for that refresh before it is sent again (to the new leader, once the refresh
has asked a node that answers). So a metadata refresh asks the nodes that went silent
only after the others (it goes past them once, and only if no other node answered, asks
again with them).

Installed once per process by ``infra.clients`` for every aiokafka client the project
builds (the worker's Faust app, the API, the sink, the simulator, the log tools).
"""

from __future__ import annotations

import random
import time
from contextvars import ContextVar
from typing import Any

from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.errors import RequestTimedOutError

# Long enough to outlast the group's rebalance after a node went silent (a session, 6 s,
# and a lookup's retries), short enough that a node back from a pause is asked again soon
# (a request to it that is answered clears it at once).
SILENT_FOR_S = 60.0
# Where a client keeps {node id: when a request to it last timed out}.
SILENT = "_dispatchwire_silent"
# The nodes the current task's metadata refresh goes past (its first try), with their client.
PASSING: ContextVar[tuple[Any, frozenset[Any]] | None] = ContextVar(
    "dispatchwire_passing", default=None
)


def silent_nodes(client: AIOKafkaClient) -> dict[Any, float]:
    return client.__dict__.setdefault(SILENT, {})


def answering(nodes: list[Any], silent: dict[Any, float], now: float) -> list[Any]:
    """``nodes`` but those that left a request unanswered within ``SILENT_FOR_S``; all of
    them if every one did (one of them may be back)."""
    return [n for n in nodes if now - silent.get(n, -SILENT_FOR_S) >= SILENT_FOR_S] or nodes


def install() -> None:
    """Patch aiokafka's client class (once per process): see above."""
    if getattr(AIOKafkaClient, "_dispatchwire_silent_nodes", False):
        return
    send = AIOKafkaClient.send
    get_conn = AIOKafkaClient._get_conn
    metadata_update = AIOKafkaClient._metadata_update

    async def send_noting_silence(
        self: AIOKafkaClient, node_id: Any, request: Any, *, group: Any = ConnectionGroup.DEFAULT
    ) -> Any:
        try:
            answer = await send(self, node_id, request, group=group)
        except RequestTimedOutError:
            # before the metadata refresh aiokafka asks for as it closes the connection
            silent_nodes(self)[node_id] = time.monotonic()
            raise
        silent = self.__dict__.get(SILENT)
        if silent:
            silent.pop(node_id, None)
        return answer

    def get_random_node_answering(self: AIOKafkaClient) -> Any:
        nodes = [b.nodeId for b in self.cluster.brokers()]
        if not nodes:
            return None
        silent = self.__dict__.get(SILENT)
        if silent:
            nodes = answering(nodes, silent, time.monotonic())
        return random.choice(nodes)  # spreading the lookups, as aiokafka does

    async def metadata_update_silent_last(self: AIOKafkaClient, cluster: Any, topics: Any) -> Any:
        silent = self.__dict__.get(SILENT)
        if not silent:
            return await metadata_update(self, cluster, topics)
        nodes = [b.nodeId for b in self.cluster.brokers()]
        passing = frozenset(nodes) - frozenset(answering(nodes, silent, time.monotonic()))
        if not passing:
            return await metadata_update(self, cluster, topics)
        token = PASSING.set((self, passing))
        try:
            if await metadata_update(self, cluster, topics):
                return True
        finally:
            PASSING.reset(token)
        return await metadata_update(self, cluster, topics)  # no other node answered

    async def get_conn_noting_silence(self: AIOKafkaClient, node_id: Any, **options: Any) -> Any:
        passing = PASSING.get()
        if passing is not None and passing[0] is self and node_id in passing[1]:
            return None  # _metadata_update asks the next node
        conn = await get_conn(self, node_id, **options)
        if conn is None and node_id != "bootstrap":  # refused, or never answered
            silent_nodes(self)[node_id] = time.monotonic()
        return conn

    AIOKafkaClient.send = send_noting_silence
    AIOKafkaClient.get_random_node = get_random_node_answering
    AIOKafkaClient._metadata_update = metadata_update_silent_last
    AIOKafkaClient._get_conn = get_conn_noting_silence
    AIOKafkaClient._dispatchwire_silent_nodes = True
