"""Unit positions, conflated: a city's fleet moving without a backlog of stale positions.

1,000 units at 1 Hz watched by 1,000 dashboards would be a million deliveries a second if
every ``unit_location`` went to every client. Positions are state, not facts: a dashboard
needs each unit's latest one, at a frame rate a map can show. So the hub does not hand a
``unit_location`` to the clients; it keeps it in the pending frame of every *frame group*
(the clients that share one filter, ``?region=`` and ``?events=``), latest per unit, and
every ``1 / api_position_frames_per_s`` seconds each group with something pending gets one
``unit_locations`` message, encoded once and offered to every client of the group.

Shape (``schemas.live``): columnar, ``{"fields": ["unit_id", "lat", "lon", "heading",
"eta_s", "route_index", "version"], "rows": [[...], ...]}``, one row per unit, the values of
its ``unit_location`` data. Each row is encoded once, with the position's live message
(``LiveMessage.row``, from the parsed event), so a frame is a join of ready rows: nothing
per unit is encoded per frame or per client. The key names of an object per unit were
more than half of a frame's bytes, and the frames most of the API's bytes.

Ordering rule: facts are never conflated. A status event (anything but a position) that a
group's clients want first flushes that group's pending frame, so a client sees the
positions from before the event before the event and the later ones after it, as in the
log. A forced frame restarts the group's interval, so frames per second stay at most the
rate plus the status events the group receives (those are sent one by one anyway).

Ids: a frame's id is the log position after the last position it holds (as every message's
id, ``schemas.position``), and it carries that position as ``upto``. Everything the group
wants before ``upto`` is in this frame or an earlier message, so a client resuming from a
frame's id misses nothing and gets nothing twice; ``api.feed`` keeps each client's own
position and drops (or re-ids) a frame already covered by its snapshot or backlog. A resume
backlog is conflated the same way, per client (``Conflation``), between its status events.
The one overlap: the first frame after a client's snapshot may repeat a unit's position the
snapshot already had (the same value: positions are idempotent state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import cast

from api.broadcast import Client, Hub, LiveMessage, build_message
from schemas.codec import dumps
from schemas.live import POSITION_FIELDS, UNIT_LOCATIONS
from schemas.position import Position

log = logging.getLogger(__name__)

UNIT_LOCATION = "unit_location"

FRAME_HEAD = '{"fields":' + dumps(POSITION_FIELDS) + ',"rows":['
FRAME_TAIL = "]}"


def wants_positions(client: Client) -> bool:
    """Whether ``client`` takes unit positions at all (its ``?events=`` may leave them out)."""
    events = client.events
    return events is None or UNIT_LOCATION in events or UNIT_LOCATIONS in events


def wants_position(client: Client, message: LiveMessage) -> bool:
    """Whether the ``unit_location`` ``message`` goes into ``client``'s frames."""
    return wants_positions(client) and (client.regions is None or message.region in client.regions)


def build_frame(rows: dict[str, str], last: LiveMessage) -> LiveMessage:
    """One ``unit_locations`` message of each unit's latest row (``LiveMessage.row``),
    with ``last``'s id and place in the log: the last position it holds."""
    data = FRAME_HEAD + ",".join(rows.values()) + FRAME_TAIL
    upto = Position.parse_id(last.id)
    return build_message(
        UNIT_LOCATIONS,
        last.id,
        data,
        partition=last.partition,
        offset=last.offset,
        region=last.region,
        upto=upto if upto is not None else Position(),
    )


class Conflation:
    """Positions folded into one frame until someone asks for it: ``add`` each
    ``unit_location`` (latest per unit wins, first place kept), ``take`` the frame."""

    __slots__ = ("_last", "_rows")

    def __init__(self) -> None:
        self._rows: dict[str, str] = {}
        self._last: LiveMessage | None = None

    def __bool__(self) -> bool:
        return self._last is not None

    def add(self, message: LiveMessage) -> None:
        # every unit_location has its row (``event_message``)
        self._rows[message.subject or ""] = cast(str, message.row)
        self._last = message

    def take(self) -> LiveMessage | None:
        """The frame of everything added since the last ``take`` (None if nothing was)."""
        last = self._last
        if last is None:
            return None
        frame = build_frame(self._rows, last)
        self._rows, self._last = {}, None
        return frame


class ResumeFold:
    """A resume backlog as one client takes it: the positions it wants folded into a frame
    (``Conflation``) that goes out before the next status event it wants, and at the end;
    with conflation off (``on`` false), every message it wants as it is."""

    __slots__ = ("client", "on", "pending")

    def __init__(self, client: Client, on: bool) -> None:
        self.client, self.on = client, on
        self.pending = Conflation()

    def wants(self, message: LiveMessage) -> bool:
        if self.on and message.event == UNIT_LOCATION:
            return wants_position(self.client, message)
        return self.client.wants(message)

    def push(self, message: LiveMessage) -> Iterator[LiveMessage]:
        """``message`` (one the client wants) in: what goes out now, in order."""
        if self.on and message.event == UNIT_LOCATION:
            self.pending.add(message)
            return
        yield from self.end()
        yield message

    def end(self) -> Iterator[LiveMessage]:
        frame = self.pending.take()
        if frame is not None:
            yield frame


class FrameGroup:
    """The clients of one filter, and their pending frame."""

    __slots__ = ("clients", "events", "flushed_at", "pending", "regions", "timer")

    def __init__(self, regions: frozenset[str] | None, events: frozenset[str] | None) -> None:
        self.regions = regions
        self.events = events
        self.clients: set[Client] = set()
        self.pending = Conflation()
        self.flushed_at = float("-inf")  # loop time of the last frame
        self.timer: asyncio.TimerHandle | None = None

    def wants(self, message: LiveMessage) -> bool:
        """The same test as ``Client.wants``, for every client of the group at once."""
        if self.events is not None and message.event not in self.events:
            return False
        return self.regions is None or message.region in self.regions


class PositionFrames:
    """The frame groups of a hub; ``send`` offers a finished frame to a group's clients."""

    def __init__(
        self, frames_per_s: float, send: Callable[[set[Client], LiveMessage], None]
    ) -> None:
        self.interval = 1.0 / frames_per_s
        self._send = send
        self._groups: dict[tuple[object, object], FrameGroup] = {}
        self.frames = 0  # frames built (each once, for all the clients of its group)

    def join(self, client: Client) -> None:
        if not wants_positions(client):
            return
        key = (client.regions, client.events)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = FrameGroup(client.regions, _as_locations(client.events))
        group.clients.add(client)

    def leave(self, client: Client) -> None:
        key = (client.regions, client.events)
        group = self._groups.get(key)
        if group is None:
            return
        group.clients.discard(client)
        if not group.clients:
            if group.timer is not None:
                group.timer.cancel()
            del self._groups[key]

    def add(self, message: LiveMessage) -> None:
        """A ``unit_location``: into the pending frame of every group that wants it."""
        loop: asyncio.AbstractEventLoop | None = None
        for group in self._groups.values():
            if not group.wants(message):
                continue
            group.pending.add(message)
            if group.timer is None:
                if loop is None:
                    loop = asyncio.get_running_loop()
                due = max(loop.time(), group.flushed_at + self.interval)
                group.timer = loop.call_at(due, self._flush, group)

    def before(self, message: LiveMessage) -> None:
        """A status event is about to go out: first the pending frame of every group that
        will receive it (the ordering rule in the module docstring)."""
        for group in self._groups.values():
            if group.pending and group.wants(message):
                if group.timer is not None:
                    group.timer.cancel()
                self._flush(group)

    def cancel(self) -> None:
        for group in self._groups.values():
            if group.timer is not None:
                group.timer.cancel()
                group.timer = None

    def _flush(self, group: FrameGroup) -> None:
        group.timer = None
        frame = group.pending.take()
        if frame is None:
            return
        group.flushed_at = asyncio.get_running_loop().time()
        self.frames += 1
        self._send(group.clients, frame)


def _as_locations(events: frozenset[str] | None) -> frozenset[str] | None:
    """A group's event filter as ``FrameGroup.wants`` reads it: asking for ``unit_locations``
    means taking the ``unit_location`` events it is made of."""
    if events is None or UNIT_LOCATIONS not in events:
        return events
    return events | {UNIT_LOCATION}


class ConflatingHub(Hub):
    """A hub whose clients get unit positions as frames (the module docstring)."""

    def __init__(
        self, frames_per_s: float, on_delivered: Callable[[int], None] | None = None
    ) -> None:
        super().__init__(on_delivered)
        self.frames = PositionFrames(frames_per_s, self.deliver)

    def subscribe(self, client: Client) -> None:
        super().subscribe(client)
        self.frames.join(client)

    def unsubscribe(self, client: Client) -> None:
        super().unsubscribe(client)
        self.frames.leave(client)

    def publish(self, message: LiveMessage) -> None:
        if message.event == UNIT_LOCATION:
            self.frames.add(message)
            return
        self.frames.before(message)
        super().publish(message)

    def close_all(self, reason: str) -> None:
        self.frames.cancel()
        super().close_all(reason)


def hub_for(frames_per_s: float, on_delivered: Callable[[int], None] | None = None) -> Hub:
    """The hub for ``api_position_frames_per_s``: conflating, or (0) every position as is."""
    if frames_per_s > 0:
        return ConflatingHub(frames_per_s, on_delivered)
    return Hub(on_delivered)
