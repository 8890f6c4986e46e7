"""What a batch leaves behind when the group lease runs out under it (``streams.lease``).

``tests/streams/test_lease_fence.py`` shows on a broker that a worker its group dropped
publishes nothing; it cannot show the table, which a redelivery would mend by itself. Here
the batch processor runs with a producer that only records what it is given: the lease
runs out once a part's table writes are out, and the batch must publish nothing, ack
nothing, give its messages back, and leave the table as it was before it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import faust

from schemas import encode
from streams.processing import BatchProcessor, ChangelogTable
from tests.streams.world import medical_report

EVENTS, DEAD = "t.dispatch.events", "t.dispatch.dead"
GENERATION = 7


@dataclass
class Recorded:
    topic: str
    key: bytes | None
    value: bytes | None


@dataclass
class Producer:
    """Takes each send at once; ``on_send`` runs after it (here: the lease runs out)."""

    sent: list[Recorded] = field(default_factory=list)
    on_send: Any = None

    async def send(self, topic: str, key: Any, value: Any, *rest: Any) -> asyncio.Future[None]:
        self.sent.append(Recorded(topic, key, value))
        if self.on_send is not None:
            self.on_send(topic)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class Consumer:
    unacked: set[Any] = field(default_factory=set)


@dataclass(eq=False)
class Message:
    value: bytes
    partition: int
    offset: int
    timestamp: float = 1_790_000_000.0
    topic: str = "t.dispatch.commands"
    generation_id: int = GENERATION


@dataclass(eq=False)
class Event:
    value: bytes
    message: Message


def processor(lease: dict[str, bool]) -> tuple[BatchProcessor, Producer, list[int]]:
    app = faust.App("fenced-batch-test", broker="kafka://127.0.0.1:1", store="memory://")
    producer = Producer()
    app.producer = producer  # type: ignore[assignment]
    app.consumer = Consumer()  # type: ignore[assignment]
    table = ChangelogTable(app, name="state", partitions=2, value_type=bytes)
    rejoins: list[int] = []

    async def on_fenced(generation: int) -> None:
        rejoins.append(generation)

    batches = BatchProcessor(
        app,
        table,
        None,  # type: ignore[arg-type]  # (a report needs no router)
        5.0,
        EVENTS,
        DEAD,
        holds=lambda generation: lease["held"] and generation == GENERATION,
        on_fenced=on_fenced,
    )
    return batches, producer, rejoins


def reports(first_offset: int, n: int) -> list[Event]:
    return [
        Event(value, Message(value, 0, first_offset + i))
        for i, value in enumerate(encode(medical_report()) for _ in range(n))
    ]


def run(batches: BatchProcessor, batch: list[Event], acked: list[Event], held: set) -> None:
    async def ack(event: Event) -> None:  # as Faust's: acked, no longer held by the stream
        acked.append(event)
        batches.app.consumer.unacked.discard(event.message)

    async def go() -> None:
        for event in batch:
            batches.app.consumer.unacked.add(event.message)
        await batches.process(batch, ack, held)

    asyncio.run(go())


def test_a_batch_whose_lease_runs_out_leaves_nothing_and_the_table_as_it_was() -> None:
    lease = {"held": True}
    batches, producer, rejoins = processor(lease)
    acked: list[Event] = []
    held: set[tuple[int, int]] = set()
    first = reports(0, 2)
    run(batches, first, acked, held)
    # the premise: with the lease held, a batch is stored, published and acked
    assert [r.topic for r in producer.sent].count(EVENTS) == 2
    assert acked == first and not held and not rejoins
    before = dict(batches.table.data.items())
    producer.sent.clear()

    def lose_lease(topic: str) -> None:
        if topic != EVENTS:  # a table write went out: the lease runs out before its ack
            lease["held"] = False

    producer.on_send = lose_lease
    acked.clear()
    second = reports(2, 3)
    run(batches, second, acked, held)

    assert producer.sent, "the part's table writes went out before the lease ran out"
    assert all(r.topic != EVENTS for r in producer.sent), "a fenced batch published events"
    assert acked == [], "a fenced batch acked commands"
    assert not batches.app.consumer.unacked, "the batch's messages were not given back"
    assert held == {(0, GENERATION)}
    assert rejoins == [GENERATION]
    assert batches.fenced == 1
    assert dict(batches.table.data.items()) == before, "the table kept the fenced decisions"
    assert batches.table.unsent == [] and batches.table.undo == []


def test_a_batch_after_the_lease_ran_out_is_not_decided() -> None:
    lease = {"held": False}
    batches, producer, rejoins = processor(lease)
    acked: list[Event] = []
    held: set[tuple[int, int]] = set()
    run(batches, reports(0, 2), acked, held)
    assert batches.phases["decide_s"] == 0.0, "a command was decided without the lease"
    assert producer.sent == [] and acked == [] and dict(batches.table.data.items()) == {}
    assert held == {(0, GENERATION)} and rejoins == [GENERATION]
    # the partition's later commands of that generation are let go quietly, undecided
    run(batches, reports(2, 2), acked, held)
    assert producer.sent == [] and acked == [] and dict(batches.table.data.items()) == {}
    assert batches.fenced == 1 and rejoins == [GENERATION]
    assert not batches.app.consumer.unacked
