"""Command outcomes: the HTTP requests waiting for the event that answers their command.

``api.commands.submit`` asks for a future (``expect``) before it writes a command; the read
model hands every event it folds to ``settle``, which resolves the futures waiting for that
command id and remembers the last ``RECENT_OUTCOMES`` command ids' events, so a retry whose
outcome was already folded is answered at once.

A retry the worker had answered before comes back as one ``command_repeated`` naming the
recorded events instead of copies of them (``streams.processing``): ``settle`` answers its
waiters with those events from memory, or, if they are older than the memory, with the
``command_repeated`` itself (``api.commands`` answers that with 202 and the command id).
Movement (``unit_location``) is not remembered: no request waits for it, and at fleet
scale it would push every command's outcome out of the memory within seconds.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from schemas.events import CommandRejectedEvent, CommandRepeated, Event, UnitLocation

RECENT_OUTCOMES = 10_000


class Outcomes:
    """Futures by command id, and the recent events of each command id."""

    def __init__(self, recent: int = RECENT_OUTCOMES) -> None:
        self.recent = recent
        self._waiters: dict[str, list[tuple[tuple[type, ...], asyncio.Future[Event]]]] = {}
        self._outcomes: OrderedDict[str, list[Event]] = OrderedDict()

    def expect(
        self, command_id: str, kinds: tuple[type, ...], recent: bool = True
    ) -> asyncio.Future[Event]:
        """A future for the first event of ``command_id`` of one of ``kinds`` (or its
        rejection); already resolved if that outcome was seen recently, unless ``recent``
        is false (a client's command id may be another client's: only the worker knows)."""
        kinds = (*kinds, CommandRejectedEvent, CommandRepeated)
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        for event in self._outcomes.get(command_id, ()) if recent else ():
            if isinstance(event, kinds):
                future.set_result(event)
                return future
        self._waiters.setdefault(command_id, []).append((kinds, future))
        return future

    def forget(self, command_id: str, future: asyncio.Future[Event]) -> None:
        waiters = self._waiters.get(command_id)
        if waiters:
            waiters[:] = [w for w in waiters if w[1] is not future]
            if not waiters:
                del self._waiters[command_id]

    def settle(self, event: Event) -> None:
        """``event`` was folded: resolve whoever waits for it, and remember it."""
        if isinstance(event, CommandRepeated):
            self._settle_repeat(event)
            return
        if not isinstance(event, UnitLocation):
            seen = self._outcomes.setdefault(event.command_id, [])
            seen.append(event)
            self._outcomes.move_to_end(event.command_id)
            while len(self._outcomes) > self.recent:
                self._outcomes.popitem(last=False)
        self._resolve(event)

    def _settle_repeat(self, event: CommandRepeated) -> None:
        """A retry answered from the worker's record: its waiters get the recorded events."""
        recorded = {e.event_id: e for e in self._outcomes.get(event.command_id, ())}
        answers = [recorded[i] for i in event.event_ids if i in recorded]
        if answers:
            self._outcomes.move_to_end(event.command_id)
        for answer in answers or [event]:
            self._resolve(answer)

    def _resolve(self, event: Event) -> None:
        for kinds, future in self._waiters.get(event.command_id, ()):
            if isinstance(event, kinds) and not future.done():
                future.set_result(event)
