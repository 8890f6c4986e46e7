"""The one Kafka client room (``infra/clients.py``): clients from settings, partition
discovery, and library errors mapped to ours (real broker; a closed port for "down")."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
from aiokafka import errors as aio_errors
from kafka import errors as kp_errors

from analytics.logio import LogWindow, Window
from dispatchwire.errors import KafkaError, KafkaUnavailable
from infra import clients

pytestmark = pytest.mark.kafka


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_partitions_are_discovered_by_a_fresh_metadata_request(settings) -> None:
    async def discover() -> tuple[list[int], list[int]]:
        consumer = clients.aio_consumer(settings, group_id=None)
        await consumer.start()
        try:
            return (
                await clients.partitions_of(consumer, settings.events_topic),
                await clients.partitions_of(consumer, settings.topic("no-such-topic")),
            )
        finally:
            await consumer.stop()

    assert asyncio.run(discover()) == (list(range(settings.partitions)), [])
    sync = clients.consumer(settings, group_id=None, enable_auto_commit=False)
    try:
        assert clients.partitions_of_sync(sync, settings.events_topic) == list(
            range(settings.partitions)
        )
    finally:
        sync.close()


def test_a_broker_that_does_not_answer_names_the_bootstrap_setting(make_settings) -> None:
    down = make_settings(kafka_bootstrap=f"127.0.0.1:{_closed_port()}")

    async def start() -> None:
        producer = clients.aio_producer(down, request_timeout_ms=2000)
        try:
            with clients.kafka_errors(down, "starting a producer"):
                await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaUnavailable, match="DISPATCHWIRE_KAFKA_BOOTSTRAP") as caught:
        asyncio.run(start())
    assert isinstance(caught.value.__cause__, aio_errors.KafkaError)
    # the replay's reader maps through the same room
    with pytest.raises(KafkaUnavailable, match="DISPATCHWIRE_KAFKA_BOOTSTRAP"):
        LogWindow(down, Window())


@pytest.mark.parametrize(
    "error",
    [
        aio_errors.UnknownTopicOrPartitionError(),
        kp_errors.UnknownTopicOrPartitionError(),
        aio_errors.TopicAuthorizationFailedError(),
        kp_errors.PolicyViolationError(),
    ],
)
def test_other_library_errors_say_what_was_being_done(settings, error: Exception) -> None:
    with (
        pytest.raises(KafkaError, match="reading the thing failed") as caught,
        clients.kafka_errors(settings, "reading the thing"),
    ):
        raise error
    assert not isinstance(caught.value, KafkaUnavailable)
    assert caught.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [
        aio_errors.KafkaConnectionError(),
        kp_errors.KafkaConnectionError(),
        aio_errors.RequestTimedOutError(),
        kp_errors.KafkaTimeoutError(),
        ConnectionRefusedError(),
    ],
)
def test_unreachable_errors_of_either_library_are_kafka_unavailable(settings, error) -> None:
    with (
        pytest.raises(KafkaUnavailable, match=settings.kafka_bootstrap),
        clients.kafka_errors(settings, "x"),
    ):
        raise error


def test_errors_of_our_own_and_others_pass_through(settings) -> None:
    with pytest.raises(ValueError), clients.kafka_errors(settings):
        raise ValueError("not Kafka's")


def test_faust_gets_every_bootstrap_address(make_settings) -> None:
    s = make_settings(kafka_bootstrap="127.0.0.1:1, 127.0.0.2:2")
    assert clients.faust_broker_options(s) == {"broker": "kafka://127.0.0.1:1;kafka://127.0.0.2:2"}


WIRED = """
import asyncio
from aiokafka.client import AIOKafkaClient
from dispatchwire.settings import Settings
from infra import clients

def fixes():
    return [getattr(AIOKafkaClient, name, False)
            for name in ("_dispatchwire_conn_locks", "_dispatchwire_silent_nodes")]

before = fixes()

async def build():
    clients.{builder}(Settings(kafka_bootstrap="127.0.0.1:1"))

asyncio.run(build())
print(before, fixes())
"""


@pytest.mark.parametrize("builder", ["aio_consumer", "aio_producer"])
def test_every_aiokafka_client_built_here_goes_on_past_silent_nodes(builder: str) -> None:
    """The API, the sink, the simulator and the log tools build their clients here; before,
    only the worker's process had aiokafka's connection lock and node choice changed
    (``infra.connections``, ``infra.nodes``; tests/faults/test_silent_node.py). A process of
    its own, so that no other test's clients have changed aiokafka already."""
    out = subprocess.run(
        [sys.executable, "-c", WIRED.replace("{builder}", builder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.split() == ["[False,", "False]", "[True,", "True]"], out
