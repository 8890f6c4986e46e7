"""Talking to the real broker from stream tests: send commands, read the event log."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dispatchwire.settings import Settings
from infra.topics import kafka_python_partitioner
from schemas import decode_event, encode
from schemas.events import Event
from schemas.projection import Projection
from streams.state import TABLE_NAME
from tests.conftest import WorkerProcess, wait_for


class Commands:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # placed like the API's and the worker's records (schemas.placement)
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            linger_ms=5,
            partitioner=kafka_python_partitioner(settings),
        )

    def send(self, *commands: object) -> None:
        self.send_all(commands)

    def send_all(self, commands: Iterable[object]) -> None:
        for cmd in commands:
            self.producer.send(
                self.settings.commands_topic,
                key=cmd.region.encode(),  # type: ignore[attr-defined]
                value=encode(cmd),
            )  # type: ignore[arg-type]
        self.producer.flush(30)

    def send_raw(self, key: bytes, value: bytes, topic: str | None = None) -> None:
        self.producer.send(topic or self.settings.commands_topic, key=key, value=value)
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.close()


class EventLog:
    """Every record of a topic (default: the events topic), read from the beginning."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.topic = topic or settings.events_topic
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
        )
        parts = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.records: list = []
        self.events: list[Event] = []

    def poll(self) -> list[Event]:
        for batch in self.consumer.poll(timeout_ms=200, max_records=5000).values():
            for record in batch:
                self.records.append(record)
                if self.topic.endswith("dispatch.events"):
                    self.events.append(decode_event(record.value))
        return self.events

    def for_command(self, command_id: str) -> list[Event]:
        return [e for e in self.events if e.command_id == command_id]

    def wait_command(self, command_id: str, count: int = 1, timeout: float = 30.0) -> list[Event]:
        def done() -> list[Event]:
            self.poll()
            found = self.for_command(command_id)
            return found if len(found) >= count else []

        return wait_for(done, timeout=timeout, message=f"events of command {command_id}")  # type: ignore[return-value]

    def wait(self, predicate, timeout: float = 30.0, message: str = "events") -> list[Event]:
        def done() -> list[Event]:
            self.poll()
            return [e for e in self.events if predicate(e)]

        return wait_for(done, timeout=timeout, message=message)  # type: ignore[return-value]

    def projection(self) -> Projection:
        return Projection().apply_all(self.events)

    def close(self) -> None:
        self.consumer.close()


def changelog_topic(settings: Settings) -> str:
    """The worker table's changelog topic (Faust names it after the app id and the table)."""
    return f"{settings.app_id}-{TABLE_NAME}-changelog"


def read_to_end(settings: Settings, topic: str, timeout: float = 30.0) -> list:
    """Every record of ``topic``, from its start to its end as it is now (what a recovery
    of a changelog reads)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def scripted_worker(
    settings: Settings, log_path: Path, script: str, env: dict[str, str]
) -> WorkerProcess:
    """``tests/streams/<script>`` (a worker with a fault built in) instead of ``dispatchwire
    worker``, importing this checkout's code whatever the environment installed."""
    path = Path(__file__).resolve().parent / script
    return WorkerProcess(
        settings,
        log_path,
        ready_timeout=120.0,
        command=(sys.executable, str(path)),
        extra_env={**env, "PYTHONPATH": str(path.parents[2])},
    )
