"""Which broker node the worker's Kafka clients ask when any node will do: not one that has
just left a request unanswered.

Found by the paused-node cluster case (``tests/faults/test_cluster_faults.py``) once the
connection lock was fixed (``streams.connections``): a worker's heartbeat to the paused
coordinator timed out at 07:20:19.6 (17 s, ``streams.app.REQUEST_TIMEOUT_S``), and its
next word from the group came at 07:20:36.8, one more request timeout later, right after
"Group Coordinator Request failed: RequestTimedOutError" (07:20:36.6). aiokafka finds the
new coordinator by asking a *random* known broker (``AIOKafkaClient.coordinator_lookup``
via ``get_random_node``), and a SIGSTOPped broker keeps the request and never answers: the
paused node was still in the client's metadata, so each lookup had one chance in three to
ask it and wait out the timeout, while heartbeats, the rejoin and the offset commit waited
for the lookup. The Java client sends these requests to its least loaded node, one with no
request in flight and no recent failure.

So here a client remembers each node whose request timed out, until a request to it is
answered or ``SILENT_FOR_S`` has passed, and ``get_random_node`` (the coordinator lookup's
choice) picks among the other nodes while there are any. The first request to a node that
goes silent still waits out its timeout (that is how it is found silent). Installed once
per process, in the worker (``streams.app``), for every aiokafka client of the process.
Not changed: ``_metadata_update`` shuffles the brokers itself, so a metadata refresh can
still ask a silent node first (it then asks the next).
"""

from __future__ import annotations

import random
import time
from typing import Any

from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.errors import RequestTimedOutError

# Long enough to outlast the group's rebalance after a node went silent (a session, 6 s,
# and a lookup's retries), short enough that a node back from a pause is asked again soon
# (a request to it that is answered clears it at once).
SILENT_FOR_S = 60.0
# Where a client keeps {node id: when a request to it last timed out}.
SILENT = "_dispatchwire_silent"


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

    async def send_noting_silence(
        self: AIOKafkaClient, node_id: Any, request: Any, *, group: Any = ConnectionGroup.DEFAULT
    ) -> Any:
        try:
            answer = await send(self, node_id, request, group=group)
        except RequestTimedOutError:
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

    AIOKafkaClient.send = send_noting_silence
    AIOKafkaClient.get_random_node = get_random_node_answering
    AIOKafkaClient._dispatchwire_silent_nodes = True
