"""The producer side: commands to ``dispatch.commands``, keyed by region and placed on
the region's partition (``schemas.placement``).

acks=all and an idempotent producer, so a command the broker acknowledged is written
once. A command is only acknowledged to the HTTP client after the broker acknowledged
it; anything else is a ``KafkaUnavailable`` (503), and because every command carries its
``command_id`` the client can safely send the same body again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AioKafkaError

from dispatchwire.errors import KafkaUnavailable
from dispatchwire.settings import Settings
from infra.clients import aio_producer
from infra.topics import region_partitioner
from schemas.codec import encode
from schemas.commands import CommandBase

log = logging.getLogger(__name__)


class CommandBus:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ready_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                timeout_ms = max(int(self.settings.command_timeout_s * 1000), 1000)
                producer = aio_producer(
                    self.settings,
                    client_id="dispatchwire-api",
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=timeout_ms,
                    linger_ms=0,
                    # the region's own partition (schemas.placement), as every producer
                    partitioner=region_partitioner(self.settings),
                )
                try:
                    await asyncio.wait_for(producer.start(), self.settings.command_timeout_s)
                except (AioKafkaError, OSError, TimeoutError) as exc:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise KafkaUnavailable(self.settings.kafka_bootstrap, str(exc)) from exc
                self._producer = producer
            return self._producer

    async def send(self, command: CommandBase) -> None:
        """Write ``command``; returns once the broker acknowledged it (acks=all)."""
        producer = await self._ready_producer()
        try:
            await asyncio.wait_for(
                producer.send_and_wait(
                    self.settings.commands_topic, encode(command), key=command.region.encode()
                ),
                self.settings.command_timeout_s,
            )
        except (AioKafkaError, OSError, TimeoutError) as exc:
            # the producer may still hold it; drop that producer so a retry starts clean
            await self._discard(producer)
            raise KafkaUnavailable(
                self.settings.kafka_bootstrap,
                f"command {command.command_id} was not confirmed written ({exc!r}); "
                "send it again with the same command_id",
            ) from exc

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 2.0)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5.0)
