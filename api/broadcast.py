"""Encode-once fan-out to bounded client buffers.

Every live message is serialised once, into its SSE bytes and its WebSocket text frame,
when it is built; delivering it to a client is one ``list.append`` of the same object to
that client's buffer (and waking the client's writer if it was idle). A client whose
buffer is full is not waited for: its backlog is dropped and replaced by one ``RESYNC``
(the writer sends a fresh snapshot), so one slow reader costs the broadcast nothing and
holds at most ``client_queue_size`` messages.

Per connection there is the writer (the request's own task, see ``api.sse`` / ``api.ws``)
and nothing else on the hot path: no queue object with its own futures, no ping task, no
send-timeout scope. One ``Hub.keep_alive`` task serves every client: it drops the shared
``PING`` into each idle buffer every ``heartbeat_s`` and closes a writer whose send has been
stuck for longer than the send timeout (a client that stopped reading).

Writing without a task switch per client (SSE): waking 1,000 parked writers costs a task
step each (about half of a broadcast's ~20 µs per client). A writer that is parked with an
empty buffer may lend the hub its ``Client.flusher``; messages offered to such a client are
then written by ``Hub.flush``, ONE callback scheduled (``call_soon``) when the first client
of a round got something, which writes every such client's buffer in turn. It runs where the
first woken writer would have run, after the task that published (the read model's whole
fetched batch), so a burst is still one write per client. The flusher drives the server's
``send`` synchronously; when the transport is paused (the client reads slowly) the send
cannot finish at once, and the writer task finishes it (``Client.pending``) before anything
else of that client's is written. Signals (``PING``, ``RESYNC``, ``CLOSE``) always go
through the writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.codec import dumps
from schemas.events import Event, UnitLocation
from schemas.live import position_row
from schemas.position import format_position

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
    data: str = ""  # the JSON inside both (a frame of positions is made of these)
    subject: str | None = None  # the unit a ``unit_location`` moves (api.conflate)
    # a ``unit_location``'s row of a position frame (``schemas.live.POSITION_FIELDS``, JSON),
    # encoded once with the message so that a frame is only a join of rows (api.conflate)
    row: str | None = None
    # a frame of conflated positions (api.conflate): the log position it reaches, which
    # may lie on several partitions; None for one record's message or a snapshot
    upto: tuple[int, ...] | None = None
    # the same message without reporters' names and phones, for a unit token's feed; None
    # when it carries none (``for_units``)
    redacted: LiveMessage | None = None

    def for_units(self) -> LiveMessage:
        """What a unit token is sent: the message, without any reporter's name and phone
        (units see where and what; who called is the dispatcher's)."""
        return self.redacted or self


def build_message(
    event: str,
    id: str,
    data_json: str,
    *,
    partition: int = -1,
    offset: int = -1,
    region: str | None = None,
    subject: str | None = None,
    row: str | None = None,
    upto: tuple[int, ...] | None = None,
    redacted_json: str | None = None,
) -> LiveMessage:
    """``data_json`` is compact JSON (no raw newlines), so it fits one ``data:`` line;
    ``redacted_json``, if given, the same without reporters (``LiveMessage.redacted``);
    ``row``, a ``unit_location``'s frame row (``event_message`` encodes it from the event)."""
    sse = f"id: {id}\r\nevent: {event}\r\ndata: {data_json}\r\n\r\n".encode()
    ws = f'{{"event":{dumps(event)},"id":{dumps(id)},"data":{data_json}}}'
    redacted = (
        None
        if redacted_json is None
        else build_message(
            event,
            id,
            redacted_json,
            partition=partition,
            offset=offset,
            region=region,
            subject=subject,
            row=row,
            upto=upto,
        )
    )
    return LiveMessage(
        event, id, partition, offset, region, sse, ws, data_json, subject, row, upto, redacted
    )


def event_message(
    event: Event, position: Sequence[int], partition: int, offset: int
) -> LiveMessage:
    """The live message of ``event``, read at ``partition``/``offset``; ``position`` is the
    log position after it (its id). ``subject``: the unit a position moves, ``row``: its
    position as a frame's row (api.conflate), both from the parsed event."""
    redacted = without_reporter(event)
    data = event.live_data()
    return build_message(
        event.event,
        format_position(position),
        dumps(data),
        partition=partition,
        offset=offset,
        region=event.region,
        subject=getattr(event, "unit_id", None),
        row=dumps(position_row(data)) if isinstance(event, UnitLocation) else None,
        redacted_json=None if redacted is None else dumps(redacted),
    )


def without_reporter(event: Event) -> dict[str, Any] | None:
    """``event``'s live data with its emergency's reporter left out (``null``), or None if
    it names no reporter."""
    emergency = getattr(event, "emergency", None)
    if emergency is None or emergency.reporter is None:
        return None
    data = event.live_data()
    # emergency_created carries the emergency's fields at the top; emergency_updated nests it
    data.get("emergency", data)["reporter"] = None
    return data


def with_id(message: LiveMessage, id: str) -> LiveMessage:
    """The same message under another id (a resumed client's own position; see feed.py)."""
    sse_head = f"id: {message.id}\r\n".encode()
    ws_head = f'{{"event":{dumps(message.event)},"id":{dumps(message.id)},'
    return LiveMessage(
        message.event,
        id,
        message.partition,
        message.offset,
        message.region,
        f"id: {id}\r\n".encode() + message.sse[len(sse_head) :],
        f'{{"event":{dumps(message.event)},"id":{dumps(id)},' + message.ws[len(ws_head) :],
        message.data,
        message.subject,
        message.row,
        message.upto,
        None if message.redacted is None else with_id(message.redacted, id),
    )


class Signal:
    """A control item in a client buffer (not a message)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


RESYNC = Signal("resync")  # the backlog overflowed: send a fresh snapshot instead
CLOSE = Signal("close")  # end the stream (``Client.close_reason`` says why)
PING = Signal("ping")  # the heartbeat: a comment line on SSE, nothing on WebSocket
QueueItem = LiveMessage | Signal


class Client:
    """One connected stream: its filters, its bounded buffer and the writer's state."""

    __slots__ = (
        "_items",
        "_schedule",
        "_waiter",
        "close_reason",
        "events",
        "filtered",
        "flusher",
        "gone",
        "limit",
        "overflows",
        "pending",
        "redact",
        "regions",
        "send_started",
        "timed_out",
        "transport",
        "writer",
    )

    def __init__(
        self,
        transport: str,
        queue_size: int,
        regions: frozenset[str] | None = None,
        events: frozenset[str] | None = None,
        redact: bool = False,
    ) -> None:
        self.transport = transport
        self.regions = regions
        self.events = events
        self.redact = redact  # a unit token: no reporter's name or phone (``api.feed``)
        self.filtered = regions is not None or events is not None
        self.limit = max(queue_size, 2)
        self.overflows = 0
        self.close_reason: str | None = None
        self.gone = False  # the peer disconnected
        self.send_started = 0.0  # loop time a write began; 0.0 while none is in flight
        self.timed_out = False
        self.writer: asyncio.Task[object] | None = None  # cancelled when a send is stuck
        # writing without the writer task (the module docstring): the writer's function
        # that writes buffered messages at once, lent while it is parked (``Hub.lend``)
        self.flusher: Callable[[list[LiveMessage]], None] | None = None
        # a send the flusher started that the transport paused: the writer finishes it
        self.pending: PendingSend | None = None
        self._schedule: Callable[[Client], None] | None = None
        self._items: list[QueueItem] = []
        self._waiter: asyncio.Future[None] | None = None

    def wants(self, message: LiveMessage) -> bool:
        if self.events is not None and message.event not in self.events:
            return False
        return self.regions is None or message.region in self.regions

    def offer(self, message: LiveMessage) -> bool:
        """Buffer ``message``; on overflow drop the backlog and ask for a resync instead."""
        items = self._items
        if len(items) >= self.limit:
            self.overflows += 1
            self._replace_backlog(RESYNC)
            return False
        items.append(message)
        if self.flusher is not None:
            if len(items) == 1:  # the first of this round: the hub's flush writes it
                schedule = self._schedule
                if schedule is not None:
                    schedule(self)
            return True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return True

    def flush(self) -> None:
        """Write what is buffered now, through the lent ``flusher``; the writer task
        instead if a signal is buffered, a send is in flight or nothing is lent."""
        flusher = self.flusher
        items = self._items
        if not items:
            return
        if flusher is None or self.send_started or self.pending is not None:
            self.wake()
            return
        for item in items:
            if item.__class__ is not LiveMessage:
                self.wake()
                return
        self._items = []
        flusher(items)  # type: ignore[arg-type]  # only LiveMessages: checked above

    def ping(self) -> None:
        """The heartbeat, unless something is already waiting to go out."""
        if not self._items:
            self._items.append(PING)
            self.wake()

    def close(self, reason: str) -> None:
        self.close_reason = reason
        self._replace_backlog(CLOSE)

    def disconnected(self) -> None:
        """The peer went away: end the writer without writing anything more."""
        self.gone = True
        self._items.clear()
        self._items.append(CLOSE)
        self.wake()

    @property
    def backlog(self) -> int:
        return len(self._items)

    def take_nowait(self) -> list[QueueItem]:
        """Everything buffered, oldest first; the buffer is left empty."""
        items, self._items = self._items, []
        return items

    async def take(self) -> list[QueueItem]:
        """Everything buffered, once there is something (one wake-up for a whole burst)."""
        while not self._items:
            await self.arrival()
        items, self._items = self._items, []
        return items

    def arrival(self) -> asyncio.Future[None]:
        """A future done when something is buffered. The writers await it directly (no
        coroutine per wait: at 10,000 idle clients every object kept across a broadcast
        is one more for the garbage collector to walk)."""
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        return waiter

    def _replace_backlog(self, signal: Signal) -> None:
        self._items.clear()
        self._items.append(signal)
        self.wake()

    def wake(self) -> None:
        """Wake the writer task (it finishes a ``pending`` send, then the buffer)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


class PendingSend:
    """A ``send`` the flusher started that suspended (the transport paused): ``finish``
    runs the rest of it in the writer task."""

    __slots__ = ("_steps", "_waiting")

    def __init__(self, steps: Generator[Any, None, None], waiting: Any) -> None:
        self._steps = steps  # the send's ``__await__`` iterator
        self._waiting = waiting  # what it awaits (the transport's drain future)

    async def finish(self) -> None:
        steps, waiting = self._steps, self._waiting
        loop = asyncio.get_running_loop()
        try:
            while True:
                # wait for what the send awaits without awaiting it here: the send's own
                # ``await`` already marked it as awaited (a second ``await`` of a pending
                # future raises), so this task waits on a future of its own instead
                resumed = loop.create_future()
                if waiting is None:  # a bare yield (``asyncio.sleep(0)``)
                    loop.call_soon(_resolve, resumed)
                else:
                    waiting.add_done_callback(lambda _, resumed=resumed: _resolve(resumed))
                await resumed
                try:
                    waiting = steps.send(None)
                except StopIteration:
                    return
        finally:
            steps.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def send_now(send: Callable[[Any], Awaitable[None]], message: Any) -> PendingSend | None:
    """Run ``send(message)`` without a task switch: None if it finished at once (what an
    ASGI server's send does unless its transport is paused), else the rest of it."""
    steps = send(message).__await__()
    try:
        waiting = steps.send(None)
    except StopIteration:
        return None
    except BaseException:
        steps.close()
        raise
    return PendingSend(steps, waiting)


class Hub:
    """The set of connected clients and the one loop that hands each message to them."""

    def __init__(self, on_delivered: Callable[[int], None] | None = None) -> None:
        self.clients: set[Client] = set()
        self._on_delivered = on_delivered
        self.delivered = 0
        self.timeouts = 0
        self._dirty: list[Client] = []  # clients with something for ``flush`` to write
        self._flush_at: asyncio.Handle | None = None
        self.closing = False  # set by ``close_all``: streams outside the hub end too

    def subscribe(self, client: Client) -> None:
        self.clients.add(client)

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def lend(self, client: Client, flusher: Callable[[list[LiveMessage]], None] | None) -> None:
        """``client``'s writer lends (or, with None, takes back) the function that writes
        its buffered messages at once (the module docstring)."""
        client.flusher = flusher
        client._schedule = None if flusher is None else self._mark

    def _mark(self, client: Client) -> None:
        self._dirty.append(client)
        if self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write every marked client's buffer, one after another in this one callback."""
        self._flush_at = None
        dirty, self._dirty = self._dirty, []
        for client in dirty:
            try:
                client.flush()
            except Exception:  # one broken connection must not stop the others' writes
                log.exception("writing to a %s client failed; closing it", client.transport)
                self.lend(client, None)
                client.close("write failed")

    def publish(self, message: LiveMessage) -> None:
        self.deliver(self.clients, message, filtered=True)

    def deliver(self, clients: set[Client], message: LiveMessage, filtered: bool = False) -> None:
        """Hand ``message`` to ``clients`` (those whose filter wants it, if ``filtered``)."""
        delivered = 0
        for client in clients:
            if filtered and client.filtered and not client.wants(message):
                continue
            if client.offer(message):
                delivered += 1
        if delivered:
            self.delivered += delivered
            if self._on_delivered is not None:
                self._on_delivered(delivered)

    def close_all(self, reason: str) -> None:
        self.closing = True
        for client in list(self.clients):
            client.close(reason)

    async def keep_alive(self, heartbeat_s: float, send_timeout_s: float) -> None:
        """Forever: heartbeats into idle buffers, and stuck writers closed.

        One task for all clients; it wakes often enough to notice a stuck send within a
        fraction of the timeout, and pings on every ``heartbeat_s``.
        """
        loop = asyncio.get_running_loop()
        tick = max(0.05, min(heartbeat_s, send_timeout_s / 4, 1.0))
        next_ping = loop.time() + heartbeat_s
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            ping = now >= next_ping
            if ping:
                next_ping = now + heartbeat_s
            for client in list(self.clients):
                started = client.send_started
                if started and now - started > send_timeout_s and not client.timed_out:
                    self._time_out(client, now - started)
                elif ping:
                    client.ping()

    def _time_out(self, client: Client, stuck_s: float) -> None:
        log.info(
            "closing a %s client that stopped reading (a write stuck for %.1fs)",
            client.transport,
            stuck_s,
        )
        self.timeouts += 1
        client.timed_out = True
        self.unsubscribe(client)
        if client.writer is not None:
            client.writer.cancel()
