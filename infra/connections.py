"""A Kafka client's new connections wait only for their own node, not for a silent one.

Found by the paused-node cluster case (``tests/faults/test_cluster_faults.py``): in 3 of 26
runs, and 2 of 12 on 2026-12-01, no command was answered for (nearly) the whole 51 s the
group's coordinator was SIGSTOPped. Both workers' logs of one of them: each heartbeat to the
paused node timed out at 07:11:38 (17 s, ``streams.app.REQUEST_TIMEOUT_S``) and neither
worker heard from its group again until 07:12:12, two request timeouts later, although the
group had a new coordinator by then; in between only the fetcher spoke, trying to connect to
the paused node ("Unable connect to node with id 3" at 07:11:54.9 and 07:12:11.9, 17 s each).

Why the group waited for the fetcher: aiokafka's client (0.14.0) makes every new connection
under one lock per client (``AIOKafkaClient._get_conn`` holds ``_get_conn_lock`` while it
awaits ``create_conn``), and a connection to a SIGSTOPped broker neither fails nor succeeds
until its request timeout (the kernel accepts the TCP connection; the broker never answers
what aiokafka sends on it). The consumer's fetcher and its group coordinator share the
client, so the coordinator's connection to the new coordinator, and the metadata refresh
that would have told the fetcher the partitions' new leaders, queued behind each 17 s
attempt to reach the paused node, and the fetcher started the next one as soon as the last
failed.

The lock is there so that two tasks do not open two connections to one node; one lock per
connection (node and connection group) keeps that and lets connections to other nodes go
ahead. Installed once per process by ``infra.clients``, for every aiokafka client the
project builds (the worker's Faust app, the API, the sink, the simulator, the log tools):
``_get_conn`` notes which connection it is making (a context variable, so
each task sees its own) and ``_get_conn_lock`` answers that connection's lock. The second
cause the case showed once this was fixed is in ``infra.nodes``.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from aiokafka.client import AIOKafkaClient, ConnectionGroup

# The (node id, connection group) the current task's ``_get_conn`` is connecting to.
CONNECTING: ContextVar[Any] = ContextVar("dispatchwire_connecting", default=None)
LOCKS = "_dispatchwire_conn_locks"  # per client: connection -> its lock


def connection_lock(client: Any, connection: Any) -> asyncio.Lock:
    locks: dict[Any, asyncio.Lock] = client.__dict__.setdefault(LOCKS, {})
    lock = locks.get(connection)
    if lock is None:
        lock = locks[connection] = asyncio.Lock()
    return lock


def install() -> None:
    """Patch aiokafka's client class (once per process): see above."""
    if getattr(AIOKafkaClient, "_dispatchwire_conn_locks", False):
        return
    get_conn = AIOKafkaClient._get_conn

    async def get_conn_locking_its_own(
        self: Any,
        node_id: Any,
        *,
        group: Any = ConnectionGroup.DEFAULT,
        no_hint: bool = False,
    ) -> Any:
        token = CONNECTING.set((node_id, group))
        try:
            return await get_conn(self, node_id, group=group, no_hint=no_hint)
        finally:
            CONNECTING.reset(token)

    def own_lock(self: Any) -> asyncio.Lock:
        return connection_lock(self, CONNECTING.get())

    AIOKafkaClient._get_conn = get_conn_locking_its_own
    AIOKafkaClient._get_conn_lock = property(own_lock)
    AIOKafkaClient._dispatchwire_conn_locks = True
