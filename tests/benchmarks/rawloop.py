"""The raw peer of the Faust commands agent: one aiokafka consume loop doing the same work.

Same decode, same ``DispatchState`` over a dict whose writes go to a changelog topic (as a
Faust table's do), same ``decide``, same events published; the producer is flushed before
each offset commit, as Faust does. Run as ``python -m tests.benchmarks.rawloop COUNT`` with
the ``DISPATCHWIRE_*`` settings in the environment; exits after COUNT commands.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from dispatchwire.settings import Settings


class ChangelogDict(dict[str, Any]):
    """A dict that remembers its writes so the loop can send them to a changelog topic."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[str, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.pending.append((key, value))


async def consume_loop(settings: Settings, count: int) -> int:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from schemas import SchemaError, decode_command
    from streams.decisions import decide
    from streams.roadgraph import network_for
    from streams.routing import GraphRouter
    from streams.state import DispatchState, encoded

    router = GraphRouter(network_for(settings))
    table = ChangelogDict()
    state = DispatchState(table)
    changelog = settings.topic(f"{settings.app_id}-raw-changelog")
    consumer = AIOKafkaConsumer(
        settings.commands_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.app_id}-raw",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=1_000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    await consumer.start()
    processed = 0
    try:
        while processed < count:
            batches = await consumer.getmany(timeout_ms=1_000)
            for records in batches.values():
                for message in records:
                    processed += 1
                    try:
                        command = decode_command(message.value)
                    except SchemaError:
                        continue
                    key = state.record_key(command)
                    if state.record(key, command.command_id) is not None:
                        continue
                    now = datetime.fromtimestamp(message.timestamp / 1000, UTC)
                    outcome = decide(command, state, router, now, settings.tick_seconds)
                    if not outcome.events:
                        continue
                    state.put_record(key, command.command_id, outcome)
                    state.apply(outcome)
                    # The same bytes the worker sends: table values are already JSON text
                    # (streams.state) and events reuse the text made for the record.
                    for k, v in table.pending:
                        await producer.send(
                            changelog,
                            key=json.dumps(k).encode(),
                            value=v.encode() if isinstance(v, str) else v,
                        )
                    table.pending.clear()
                    for event, text in zip(outcome.events, encoded(outcome).events, strict=True):
                        await producer.send(
                            settings.events_topic, key=event.region.encode(), value=text.encode()
                        )
            await producer.flush()
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
    return processed


def main() -> None:
    count = int(sys.argv[1])
    asyncio.run(consume_loop(Settings(), count))


if __name__ == "__main__":
    main()
