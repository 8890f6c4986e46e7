"""Issue 16 part 4: a broker probe is one small round trip, whatever the cluster holds.

The worker's broker probe (once a second, ``streams.readiness``) and the API's ``/readyz``
check (``ReadModel.kafka_reachable``) asked for every topic's metadata and parsed the
answer on their event loop. Against a broker holding 5,600 topics (the shared test broker)
each probe blocked the worker's loop for 90-165 ms, once a second: the e2e benchmark's
reports that reached the worker then waited 150-280 ms. Each probe must name no topic.
The broker is real; the spy only records the requests the real connections send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.conn import AIOKafkaConnection
from aiokafka.protocol.metadata import MetadataRequest

from api.broadcast import Hub
from api.metrics import ApiMetrics
from api.readmodel import ReadModel
from dispatchwire.settings import Settings
from infra.clients import aio_producer
from streams.readiness import BrokerContact
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

ALL_TOPICS = "every topic"


@pytest.fixture
def metadata_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The topics each metadata request names, as sent by any aiokafka connection."""
    asked: list[Any] = []
    send = AIOKafkaConnection.send

    def recording_send(self: AIOKafkaConnection, request: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(request, MetadataRequest):
            topics = request._topics
            asked.append(ALL_TOPICS if topics is None else list(topics))
        return send(self, request, *args, **kw)

    monkeypatch.setattr(AIOKafkaConnection, "send", recording_send)
    yield asked


def test_the_workers_broker_probe_names_no_topic(
    settings: Settings, metadata_requests: list[Any]
) -> None:
    async def run() -> list[Any]:
        producer = aio_producer(settings)
        await producer.start()
        try:
            # the probe reaches the producer as the Faust app holds it
            app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer))
            contact = BrokerContact(timeout_s=5.0)
            metadata_requests.clear()
            await contact.probe(app)
            assert contact.last_error is None
            return list(metadata_requests)
        finally:
            await producer.stop()

    asked = asyncio.run(run())
    assert asked == [[]]


def test_the_apis_kafka_check_names_no_topic(
    settings: Settings, metadata_requests: list[Any]
) -> None:
    async def run() -> list[Any]:
        model = ReadModel(settings, Hub(), ApiMetrics())
        model.start()
        try:
            await asyncio.to_thread(wait_for, lambda: model.ready, 60.0)
            metadata_requests.clear()
            assert await model.kafka_reachable(timeout=5.0)
            return list(metadata_requests)
        finally:
            await model.stop()

    asked = asyncio.run(run())
    assert asked == [[]]
