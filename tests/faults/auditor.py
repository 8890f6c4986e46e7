"""The auditor: reads the WHOLE ``dispatch.events`` log (every partition, from the start)
and checks the design's invariants against it, the load driver's records, the API, the
worker's table and the live clients' recordings.

- every acknowledged command has exactly one outcome: its events or a ``command_rejected``
  (a re-published identical copy is a duplicate, not a second outcome);
- no event id with two different bodies;
- at no point in log order a unit on two open emergencies or an emergency held by two units;
- the fold of the log (``schemas/projection.py``) equals ``GET /api/state`` (folded up to the
  position the API states) and the worker's table;
- every live client's ids are contiguous (each id is the per-partition next-offset vector of
  ``schemas/position.py``) or broken only at a ``snapshot`` with ``"reset": true`` that is not
  behind the client's last id. A ``unit_locations`` frame may move further: it holds the
  latest of several positions (api/conflate.py).

It counts rather than stopping at the first violation, so a case can print its row first.
"""

from __future__ import annotations

import heapq
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from dispatchwire.settings import Settings
from schemas import EmergencyStatus, UnitStatus, decode_event
from schemas.events import (
    CommandRejectedEvent,
    CommandRepeated,
    EmergencyUpdated,
    Event,
    UnitStatusUpdate,
)
from schemas.position import Position
from schemas.projection import Projection
from tests.faults.clients import Recording
from tests.faults.driver import SentCommand

ENGAGED = (UnitStatus.DISPATCHED, UnitStatus.ON_SCENE)
HELD = (EmergencyStatus.ASSIGNED, EmergencyStatus.ON_SCENE)


@dataclass(frozen=True)
class DoubleHold:
    """A unit on two open emergencies, or an emergency held by two units, at a point of the
    log: what the check says, and the ids of the entities it names (for their timelines)."""

    text: str
    ids: list[str]


@dataclass(frozen=True)
class LoggedEvent:
    partition: int
    offset: int
    raw: bytes
    event: Event
    timestamp: int = 0  # the record's (ms), to merge partitions in time order


@dataclass
class Outcomes:
    sent: int = 0
    acknowledged: int = 0
    outcomes: int = 0  # acknowledged commands with exactly one outcome
    lost: list[str] = field(default_factory=list)  # acknowledged, nothing in the log
    two_outcomes: list[str] = field(default_factory=list)
    duplicated: int = 0  # re-published copies of this case's events
    server_errors: int = 0


@dataclass
class ClientStats:
    clients: int = 0
    messages: int = 0
    reconnects: int = 0
    gaps: int = 0  # records skipped without a reset
    duplicates: int = 0  # records delivered twice (by log position)
    resets: int = 0
    resets_behind: int = 0  # reset snapshots behind the client's last id
    worst_behind: int = 0
    problems: list[str] = field(default_factory=list)


class Auditor:
    """Reads the events log of ``settings`` from the start; ``catch_up`` reads to the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        topic = settings.events_topic
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.log: dict[int, list[LoggedEvent]] = {tp.partition: [] for tp in self.tps}

    def close(self) -> None:
        self.consumer.close()

    def catch_up(self, timeout: float = 60.0) -> None:
        ends = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout
        while any(self.consumer.position(tp) < ends[tp] for tp in self.tps):
            assert time.monotonic() < deadline, "could not read the events log to its end"
            for tp, batch in self.consumer.poll(timeout_ms=500, max_records=10_000).items():
                for record in batch:
                    self.log[tp.partition].append(
                        LoggedEvent(
                            record.partition,
                            record.offset,
                            record.value,
                            decode_event(record.value),
                            record.timestamp,
                        )
                    )

    @property
    def events(self) -> list[LoggedEvent]:
        return [e for p in sorted(self.log) for e in self.log[p]]

    @property
    def position(self) -> Position:
        return tuple(self.log[p][-1].offset + 1 if self.log[p] else 0 for p in sorted(self.log))

    @property
    def live_position(self) -> Position:
        """The position after each partition's last live record: what a live client can
        reach (a ``command_repeated`` is in the log but never sent to one)."""
        return tuple(
            next((e.offset + 1 for e in reversed(self.log[p]) if e.event.live), 0)
            for p in sorted(self.log)
        )

    def silent_offsets(self) -> dict[int, set[int]]:
        """Per partition, the offsets of records that are not live messages."""
        return {p: {e.offset for e in self.log[p] if not e.event.live} for p in self.log}

    # --- the checks --------------------------------------------------------------------------

    def outcomes(self, sent: list[SentCommand], also: Sequence[str] = ()) -> Outcomes:
        """Outcomes of the driver's acknowledged commands (and of ``also``: command ids
        written to Kafka directly, which the broker acknowledged)."""
        by_command: dict[str, list[LoggedEvent]] = defaultdict(list)
        for logged in self.events:
            if not isinstance(logged.event, CommandRepeated):  # a retry's answer, not an outcome
                by_command[logged.event.command_id].append(logged)
        acked = [c.command_id for c in sent if c.acknowledged] + list(also)
        out = Outcomes(
            sent=len(sent) + len(also),
            acknowledged=len(acked),
            server_errors=sum(
                1 for c in sent for a in c.attempts if a.status >= 500 and a.status != 503
            ),
        )
        for command_id in acked:
            logged = by_command.get(command_id, [])
            if not logged:
                out.lost.append(command_id)
                continue
            ids = {e.event.event_id for e in logged}
            out.duplicated += len(logged) - len(ids)
            rejected = any(isinstance(e.event, CommandRejectedEvent) for e in logged)
            if rejected and len(ids) > 1:
                out.two_outcomes.append(command_id)
            else:
                out.outcomes += 1
        return out

    def divergent_event_ids(self) -> list[str]:
        """Event ids that appear with two different bodies (``occurred_at`` included)."""
        bodies: dict[str, Event] = {}
        bad = []
        for logged in self.events:
            first = bodies.setdefault(logged.event.event_id, logged.event)
            if first != logged.event:
                bad.append(logged.event.event_id)
        return bad

    def double_holds(self) -> list[DoubleHold]:
        """Walk the log in order: after every event, no unit may be held by two open
        emergencies and no emergency by two engaged units. Each partition is walked in
        offset order, the partitions merged by record time: a unit lent to another region
        (issue 15) is freed by its own partition after the emergency's partition closed the
        emergency, so partition after partition would show it on both."""
        fold = Projection()
        holders: dict[str, set[str]] = defaultdict(set)  # unit -> open emergencies on it
        engaged: dict[str, set[str]] = defaultdict(set)  # emergency -> units engaged on it
        held_unit: dict[str, str] = {}
        engaged_em: dict[str, str] = {}
        problems = []
        walk = heapq.merge(*(self.log[p] for p in sorted(self.log)), key=lambda e: e.timestamp)
        for logged in walk:
            event = logged.event
            if not fold.apply(event):
                continue
            touched_e = [event.emergency.id] if isinstance(event, EmergencyUpdated) else []
            unit = getattr(event, "unit", None)
            touched_u = (
                [unit.id]
                if isinstance(event, EmergencyUpdated | UnitStatusUpdate) and unit is not None
                else []
            )
            for eid in touched_e:
                em = fold.emergencies[eid]
                before = held_unit.pop(eid, None)
                if before is not None:
                    holders[before].discard(eid)
                if em.status in HELD and em.assigned_unit_id:
                    held_unit[eid] = em.assigned_unit_id
                    holders[em.assigned_unit_id].add(eid)
                    on = holders[em.assigned_unit_id]
                    if len(on) > 1:
                        problems.append(
                            DoubleHold(
                                f"@{logged.partition}:{logged.offset} unit "
                                f"{em.assigned_unit_id} on {sorted(on)}",
                                [em.assigned_unit_id, *sorted(on)],
                            )
                        )
            for uid in touched_u:
                u = fold.units[uid]
                before = engaged_em.pop(uid, None)
                if before is not None:
                    engaged[before].discard(uid)
                if u.status in ENGAGED and u.emergency_id:
                    engaged_em[uid] = u.emergency_id
                    engaged[u.emergency_id].add(uid)
                    by = engaged[u.emergency_id]
                    if len(by) > 1:
                        problems.append(
                            DoubleHold(
                                f"@{logged.partition}:{logged.offset} emergency "
                                f"{u.emergency_id} held by {sorted(by)}",
                                [u.emergency_id, *sorted(by)],
                            )
                        )
        return problems

    def timeline(self, ids: Sequence[str]) -> list[str]:
        """Every event naming one of ``ids`` (a unit or an emergency), in record time: what a
        failed consistency check prints to show how the fold got there."""
        wanted = [i.encode() for i in ids]
        found = [e for e in self.events if any(w in e.raw for w in wanted)]
        lines = []
        for logged in sorted(found, key=lambda e: (e.timestamp, e.partition, e.offset)):
            ev = logged.event
            em = getattr(ev, "emergency", None)
            unit = getattr(ev, "unit", None)
            parts = [f"{logged.timestamp} @{logged.partition}:{logged.offset}", ev.event]
            parts.append(f"cmd={ev.command_id}")
            if em is not None:
                parts.append(f"em={em.id} v{em.version} {em.status.value} {em.assigned_unit_id}")
            if unit is not None:
                parts.append(
                    f"unit={unit.id} v{unit.version} {unit.status.value} em={unit.emergency_id}"
                )
            for name in ("action", "mutual_aid", "reason"):
                if getattr(ev, name, None):
                    parts.append(f"{name}={getattr(ev, name)}")
            lines.append(" ".join(parts))
        return lines

    def fold(self, upto: Position | None = None) -> Projection:
        """The fold of the log, or of the records below ``upto`` (per partition)."""
        fold = Projection()
        for logged in self.events:
            if upto is None or logged.offset < upto[logged.partition]:
                fold.apply(logged.event)
        return fold

    def api_state_differences(self, state: dict) -> list[str]:
        """Where ``GET /api/state`` differs from the fold up to the position it states."""
        position = Position.parse_id(state["position"])
        assert position is not None and len(position) == len(self.tps), state["position"]
        assert all(p <= own for p, own in zip(position, self.position, strict=True)), (
            "catch up the auditor before comparing"
        )
        return _differences(self.fold(position).as_json(), state)


def _differences(fold: dict, other: dict) -> list[str]:
    out = []
    for part in ("emergencies", "units"):
        mine = {e["id"]: e for e in fold[part]}
        theirs = {e["id"]: e for e in other[part]}
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                out.append(f"{part[:-1]} {key}")
    return out


def table_differences(fold: Projection, table: dict) -> list[str]:
    return _differences(fold.as_json(), table)


def check_clients(
    recordings: list[Recording], silent: dict[int, set[int]] | None = None
) -> ClientStats:
    """Per client: ``high`` is the per-partition high-water of what it has seen. An event
    message must move exactly one partition one record past it; at or below it the record
    is a duplicate, further a gap. A reset snapshot may jump forward, never back. Records
    at ``silent`` offsets (``Auditor.silent_offsets``: not live messages) are passed over
    without counting as a gap."""
    offsets = {p: sorted(o) for p, o in (silent or {}).items()}

    def live_between(p: int, high: int, now: int) -> int:
        """Live records of partition ``p`` in ``[high, now)`` (none when ``now <= high``)."""
        if now <= high:
            return 0
        skipped = offsets.get(p, [])
        return now - high - (bisect_left(skipped, now) - bisect_left(skipped, high))

    stats = ClientStats(clients=len(recordings))
    for rec in recordings:
        stats.messages += len(rec.messages)
        stats.reconnects += max(rec.connections - 1, 0)
        high: list[int] | None = None
        for m in rec.messages:
            pos = Position.parse_id(m.id)
            if pos is None:
                stats.problems.append(f"{rec.name}: id {m.id!r} is not a position")
                continue
            now = list(pos)
            if high is not None and len(now) < len(high):
                now += [0] * (len(high) - len(now))
            if high is None:
                if m.event != "snapshot":
                    stats.problems.append(f"{rec.name}: {m.event} before any snapshot")
                high = now
                continue
            if m.event == "snapshot":
                if not m.reset:
                    stats.problems.append(f"{rec.name}: a snapshot without reset at {m.id}")
                stats.resets += 1
                behind = sum(max(0, h - n) for h, n in zip(high, now, strict=True))
                if behind:
                    stats.resets_behind += 1
                    stats.worst_behind = max(stats.worst_behind, behind)
            else:
                ahead = sum(
                    live_between(p, h, n) for p, (h, n) in enumerate(zip(high, now, strict=True))
                )
                if ahead == 0:
                    stats.duplicates += 1
                elif ahead > 1 and m.event != "unit_locations":
                    # a frame of conflated positions (api/conflate.py) stands for them all
                    stats.gaps += ahead - 1
            high = [max(h, n) for h, n in zip(high, now, strict=True)]
    return stats
