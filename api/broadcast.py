"""Encode-once fan-out to bounded client queues.

Every live message is serialised once, into its SSE bytes and its WebSocket text frame,
when it is built; delivering it to a client is one ``put_nowait`` of the same object into
that client's queue. A client whose queue is full is not waited for: its queue is emptied
and marked for a resync (a fresh snapshot), so one slow reader costs the broadcast nothing
and holds at most ``client_queue_size`` messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from schemas.codec import dumps

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One live message, ready to write: ``sse`` bytes and ``ws`` frame built once."""

    event: str
    id: str
    partition: int  # -1 for a snapshot (it is not one record of the log)
    offset: int
    region: str | None
    sse: bytes
    ws: str


def build_message(
    event: str, id: str, data_json: str, *, partition: int = -1, offset: int = -1,
    region: str | None = None,
) -> LiveMessage:
    """``data_json`` is compact JSON (no raw newlines), so it fits one ``data:`` line."""
    sse = f"id: {id}\r\nevent: {event}\r\ndata: {data_json}\r\n\r\n".encode()
    ws = f'{{"event":{dumps(event)},"id":{dumps(id)},"data":{data_json}}}'
    return LiveMessage(event, id, partition, offset, region, sse, ws)


def with_id(message: LiveMessage, id: str) -> LiveMessage:
    """The same message under another id (a resumed client's own position; see feed.py)."""
    sse_head = f"id: {message.id}\r\n".encode()
    ws_head = f'{{"event":{dumps(message.event)},"id":{dumps(message.id)},'
    return LiveMessage(
        message.event, id, message.partition, message.offset, message.region,
        f"id: {id}\r\n".encode() + message.sse[len(sse_head):],
        f'{{"event":{dumps(message.event)},"id":{dumps(id)},' + message.ws[len(ws_head):],
    )


class Signal:
    """A control item in a client queue (not a message)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


RESYNC = Signal("resync")
CLOSE = Signal("close")
QueueItem = LiveMessage | Signal


class Client:
    """One connected stream: its filters and its bounded queue."""

    def __init__(
        self, transport: str, queue_size: int,
        regions: frozenset[str] | None = None, events: frozenset[str] | None = None,
    ) -> None:
        self.transport = transport
        self.regions = regions
        self.events = events
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize=max(queue_size, 2))
        self.overflows = 0
        self.close_reason: str | None = None

    def wants(self, message: LiveMessage) -> bool:
        if self.events is not None and message.event not in self.events:
            return False
        return self.regions is None or message.region in self.regions

    def offer(self, message: LiveMessage) -> bool:
        """Queue ``message``; on overflow drop the backlog and ask for a resync instead."""
        try:
            self.queue.put_nowait(message)
            return True
        except asyncio.QueueFull:
            self.overflows += 1
            self._replace_backlog(RESYNC)
            return False

    def close(self, reason: str) -> None:
        self.close_reason = reason
        self._replace_backlog(CLOSE)

    def _replace_backlog(self, signal: Signal) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(signal)


class Hub:
    """The set of connected clients and the one loop that hands each message to them."""

    def __init__(self, on_delivered: Callable[[int], None] | None = None) -> None:
        self.clients: set[Client] = set()
        self._on_delivered = on_delivered
        self.delivered = 0

    def subscribe(self, client: Client) -> None:
        self.clients.add(client)

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def publish(self, message: LiveMessage) -> None:
        delivered = 0
        for client in self.clients:
            if client.wants(message) and client.offer(message):
                delivered += 1
        if delivered:
            self.delivered += delivered
            if self._on_delivered is not None:
                self._on_delivered(delivered)

    def close_all(self, reason: str) -> None:
        for client in list(self.clients):
            client.close(reason)
