"""A steady, bounded HTTP load of reports, dispatches and completions with client-chosen
command ids, retried with the SAME id on 503, 202 and connection errors, and recorded.

The driver runs its own asyncio loop in a thread, so a case can kill processes and poll
conditions while the load goes on. Every attempt is recorded: what was sent, each answer
and when, so the auditor can ask of every acknowledged command whether the log holds
exactly one outcome for it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from schemas.commands import ReportEmergency
from schemas.entities import EmergencyType
from schemas.geo import RoadNetwork, load_network
from streams.simulate import random_road_point

AUTHORITY = {"Authorization": "Bearer dev-authority"}
RETRY_ON = frozenset({202, 503})
ANSWERED = frozenset({200, 201, 409})  # the command's outcome came back
ACKNOWLEDGED = ANSWERED | {202}  # Kafka took the command


@dataclass
class Attempt:
    at: float
    status: int  # 0: connection error
    body: dict[str, Any] | None = None


@dataclass
class SentCommand:
    command_id: str
    kind: str
    path: str
    body: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    done: bool = False

    @property
    def acknowledged(self) -> bool:
        return any(a.status in ACKNOWLEDGED for a in self.attempts)

    @property
    def answered(self) -> Attempt | None:
        return next((a for a in self.attempts if a.status in ANSWERED), None)

    @property
    def final(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def named_emergencies(self) -> set[str]:
        """Every emergency id an answer to this command named."""
        names = set()
        for attempt in self.attempts:
            body = attempt.body or {}
            for value in (
                body.get("emergency_id"),
                body.get("id"),
                (body.get("emergency") or {}).get("id"),
            ):
                if isinstance(value, str):
                    names.add(value)
        return names


def new_command_id(kind: str) -> str:
    return f"flt-{kind}-{uuid.uuid4().hex[:16]}"


def random_report(network: RoadNetwork, rng: random.Random) -> ReportEmergency:
    """A report at a random road point, in that point's region (the backlogs' commands; the
    simulator's own helper of this name left with its shift plan)."""
    lat, lon = random_road_point(network, rng)
    return ReportEmergency(
        command_id=new_command_id("backlog"),
        region=network.region_for(lat, lon),
        type=rng.choice(list(EmergencyType)),
        priority=rng.randint(1, 5),
        lat=lat,
        lon=lon,
        description="fault suite backlog",
        issued_by="reporter",
    )


class LoadDriver:
    """``rate`` commands per second over ``lanes`` concurrent connections to ``url()``
    (a callable, so a restarted API on the same port is simply retried)."""

    def __init__(
        self,
        url: str,
        rate: float = 15.0,
        lanes: int = 6,
        seed: int = 7,
        retry_for_s: float = 120.0,
        replicas: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        # more API replicas: commands go to each in turn, and a command whose replica
        # does not answer (connection error, 503) is retried, same id, on the next one
        self.urls = [url, *replicas]
        self._turn = 0
        self.rate = rate
        self.lanes = lanes
        self.rng = random.Random(seed)
        self.retry_for_s = retry_for_s
        self.network = load_network()
        self.sent: list[SentCommand] = []
        self.pending: list[str] = []  # emergencies created and not yet dispatched
        self.assigned: list[str] = []  # emergencies assigned by our dispatches
        self.server_errors: list[SentCommand] = []
        self._issuing = threading.Event()
        self._paused = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> LoadDriver:
        self._issuing.set()
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            ready.set()
            loop.run_until_complete(self._main())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="load-driver")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self, drain_s: float = 120.0) -> None:
        """Stop issuing new commands; wait (bounded) until every sent one is settled."""
        self._issuing.clear()
        if self._thread is not None:
            self._thread.join(drain_s)
            assert not self._thread.is_alive(), "the load driver did not drain"

    def pause(self, drain_s: float = 120.0) -> None:
        """Stop issuing for now and wait (bounded) until no command is in flight."""
        from tests.conftest import wait_for

        self._paused.set()
        wait_for(lambda: not self._tasks, timeout=drain_s, message="the load to drain")

    def resume(self) -> None:
        self._paused.clear()

    def submit(self, coro: Any) -> Any:
        """Start a coroutine on the driver's loop; returns its ``concurrent.futures`` future."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run_now(self, coro: Any, timeout: float = 120.0) -> Any:
        """Run a coroutine on the driver's loop (e.g. a burst of concurrent dispatches)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- counts --------------------------------------------------------------------------

    def answered_after(self, since: float) -> float | None:
        """When the first outcome answered after ``since`` came back (monotonic)."""
        times = [
            a.at for c in self.sent for a in c.attempts if a.status in ANSWERED and a.at > since
        ]
        return min(times) if times else None

    def count_since(self, since: float, statuses: frozenset[int]) -> int:
        return sum(
            1 for c in self.sent for a in c.attempts if a.at > since and a.status in statuses
        )

    # --- the load --------------------------------------------------------------------------

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.lanes + 60)
        async with httpx.AsyncClient(
            base_url=self.url, timeout=httpx.Timeout(15.0), limits=limits, headers=AUTHORITY
        ) as http:
            self.http = http
            interval = 1.0 / self.rate
            lanes = asyncio.Semaphore(self.lanes)
            next_at = time.monotonic()
            while self._issuing.is_set():
                if self._paused.is_set():
                    await asyncio.sleep(0.05)  # pacing while paused
                    next_at = time.monotonic()
                    continue
                await lanes.acquire()
                task = asyncio.ensure_future(self._one(lanes))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing, not a wait
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self.retry_for_s)

    async def _one(self, lanes: asyncio.Semaphore) -> None:
        try:
            roll = self.rng.random()
            if self.assigned and roll < 0.25:
                await self.complete(self.assigned.pop(0))
            elif self.pending and roll < 0.55:
                await self.dispatch(self.pending.pop(0))
            else:
                await self.report()
        finally:
            lanes.release()

    async def report(
        self, kind: str | None = None, command_id: str | None = None, in_region: str | None = None
    ) -> SentCommand:
        """A report at a random road point; ``in_region``: a point the server places in
        that region (the server derives the region from lat and lon)."""
        lat, lon = random_road_point(self.network, self.rng)
        while in_region is not None and self.network.region_for(lat, lon) != in_region:
            lat, lon = random_road_point(self.network, self.rng)
        kind = kind or self.rng.choice(["medical", "fire", "police"])
        body: dict[str, Any] = {
            "type": kind,
            "priority": self.rng.randint(1, 5),
            "lat": lat,
            "lon": lon,
            "description": "fault suite",
        }
        sent = await self.send("report", "/api/emergencies", body, command_id)
        answer = sent.answered
        if answer is not None and answer.status == 201 and answer.body:
            self.pending.append(answer.body["id"])
        return sent

    async def dispatch(self, emergency_id: str) -> SentCommand:
        sent = await self.send("dispatch", f"/api/emergencies/{emergency_id}/dispatch", {})
        answer = sent.answered
        if answer is not None and answer.status == 200:
            self.assigned.append(emergency_id)
        return sent

    async def complete(self, emergency_id: str) -> SentCommand:
        return await self.send("complete", f"/api/emergencies/{emergency_id}/complete", {})

    async def send(
        self, kind: str, path: str, body: dict[str, Any], command_id: str | None = None
    ) -> SentCommand:
        """POST with a command id of our own; retry the same id until an outcome answers,
        a 4xx refuses it, or ``retry_for_s`` passes."""
        sent = SentCommand(command_id or new_command_id(kind), kind, path, {**body})
        sent.body["command_id"] = sent.command_id
        self.sent.append(sent)
        deadline = time.monotonic() + self.retry_for_s
        backoff = 0.1
        replica = self._turn = self._turn + 1
        while True:
            # one replica: the client's base URL, as before; several: an absolute URL
            url = path if len(self.urls) == 1 else self.urls[replica % len(self.urls)] + path
            try:
                response = await self.http.post(url, json=sent.body)
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                sent.attempts.append(Attempt(time.monotonic(), response.status_code, answer))
                status = response.status_code
            except httpx.TransportError:
                sent.attempts.append(Attempt(time.monotonic(), 0))
                status = 0
            if status >= 500 and status != 503:
                self.server_errors.append(sent)
            if status not in RETRY_ON and status != 0:
                break
            if status in (0, 503):
                replica += 1
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(backoff)  # retry backoff, not a wait for a condition
            backoff = min(backoff * 2, 1.0)
        sent.done = True
        return sent
