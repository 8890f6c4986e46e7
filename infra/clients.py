"""The one room where Kafka clients are built, partitions discovered and errors mapped.

Every consumer, producer and admin client of the project, of either library (aiokafka for
the asyncio parts, kafka-python for the synchronous ones), and the Faust app's broker
options are built here from the settings: ``DISPATCHWIRE_KAFKA_BOOTSTRAP`` and the security
settings (``infra.credentials.broker_credentials``) reach every client the same way, and
the caller adds only what is its own (group, acks, fetch sizes, a partitioner).

``kafka_errors(settings, doing)`` is the one place library errors become ours (in the
manner of httpx's ``map_httpcore_exceptions``): a refused SASL login becomes a
``ConfigurationError`` naming the login settings, a broker that does not answer a
``KafkaUnavailable`` naming ``DISPATCHWIRE_KAFKA_BOOTSTRAP``, anything else a
``KafkaError`` saying what was being done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as aio_errors
from aiokafka.protocol.metadata import MetadataRequest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kp_errors

from dispatchwire.errors import DispatchwireError, KafkaError, KafkaUnavailable
from dispatchwire.settings import Settings
from infra import connections, nodes
from infra.credentials import broker_credentials, refused_credentials

# Errors that mean "nothing (or not the right thing) answers at the bootstrap address".
_UNREACHABLE: tuple[type[BaseException], ...] = (
    aio_errors.KafkaConnectionError,
    aio_errors.NodeNotReadyError,
    aio_errors.KafkaTimeoutError,
    aio_errors.RequestTimedOutError,
    kp_errors.KafkaConnectionError,
    kp_errors.KafkaTimeoutError,
    kp_errors.RequestTimedOutError,
    kp_errors.NodeNotReadyError,
    OSError,
    TimeoutError,
)
_LIBRARY: tuple[type[BaseException], ...] = (
    aio_errors.KafkaError,
    kp_errors.KafkaError,
    *_UNREACHABLE,
)


def map_kafka_error(settings: Settings, exc: BaseException, doing: str = "") -> DispatchwireError:
    """Our error for a library error ``exc`` raised while ``doing`` something."""
    refused = refused_credentials(settings, exc)
    if refused is not None:
        return refused
    detail = f"{doing}: {exc!r}" if doing else repr(exc)
    if isinstance(exc, _UNREACHABLE):
        return KafkaUnavailable(settings.kafka_bootstrap, detail)
    return KafkaError(f"{doing or 'a Kafka request'} failed: {exc}")


@contextlib.contextmanager
def kafka_errors(settings: Settings, doing: str = "") -> Iterator[None]:
    """Turn aiokafka / kafka-python errors raised inside into ``dispatchwire.errors``.

    A plain ``with`` works in coroutines too: the mapping happens as the error passes."""
    try:
        yield
    except _LIBRARY as exc:
        raise map_kafka_error(settings, exc, doing) from exc


def _options(settings: Settings, library: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        **broker_credentials(settings, library),  # type: ignore[arg-type]
        **options,
    }


def past_silent_nodes() -> None:
    """Make every aiokafka client of this process go on past a broker that went silent
    (a frozen VM, a SIGSTOPped process, a network dropping packets): a connection to it
    holds up no other (``infra.connections``), and lookups and metadata refreshes ask the
    other nodes first (``infra.nodes``). Called by every aiokafka client built here and by
    the worker's Faust app (which builds its own)."""
    connections.install()
    nodes.install()


def aio_consumer(settings: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer (not started); ``options`` are the caller's own."""
    past_silent_nodes()
    return AIOKafkaConsumer(*topics, **_options(settings, "aiokafka", options))


def aio_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer (not started)."""
    past_silent_nodes()
    return AIOKafkaProducer(**_options(settings, "aiokafka", options))


def consumer(settings: Settings, *topics: str, **options: Any) -> KafkaConsumer:
    """A kafka-python consumer (it connects as it is built: wrap in ``kafka_errors``)."""
    return KafkaConsumer(*topics, **_options(settings, "kafka-python", options))


def producer(settings: Settings, **options: Any) -> KafkaProducer:
    """A kafka-python producer (it connects as it is built: wrap in ``kafka_errors``)."""
    return KafkaProducer(**_options(settings, "kafka-python", options))


def admin(settings: Settings, **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client, connected; errors mapped."""
    with kafka_errors(settings, "connecting the admin client"):
        return KafkaAdminClient(
            **_options(
                settings,
                "kafka-python",
                {"client_id": "dispatchwire-admin", "request_timeout_ms": 10_000, **options},
            )
        )


def broker_url(bootstrap: str) -> str:
    """``host:port,host:port`` as Faust's broker URL."""
    return ";".join(f"kafka://{hostport.strip()}" for hostport in bootstrap.split(","))


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """The broker keywords of ``faust.App(...)``: its URL and credentials."""
    return {"broker": broker_url(settings.kafka_bootstrap), **broker_credentials(settings, "faust")}


async def partitions_of(client: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partition ids of ``topic`` by a fresh metadata request (empty: no such topic).

    aiokafka 0.14 has no public call for this: ``partitions_for_topic`` reads a cache that
    only knows the topics the consumer already tracks, and ``topics()`` drops the
    partitions of the fresh metadata it fetches. So this one place uses its client."""
    cluster = await client._client.fetch_all_metadata()
    return sorted(cluster.partitions_for_topic(topic) or ())


async def metadata_round_trip(client: Any) -> None:
    """One metadata request that names no topic (the answer lists the brokers only) to a
    known broker of ``client`` (an ``AIOKafkaClient``): proof that the broker answers, at a
    cost that does not grow with the cluster's topics. A request for every topic's metadata
    (``fetch_all_metadata``, a consumer's ``topics()``) is parsed on the event loop: against
    a broker holding 5,600 topics each one blocked its loop for 90-165 ms."""
    node_id = client.get_random_node()
    if node_id is None:
        raise aio_errors.KafkaConnectionError("no broker known yet")
    await client.send(node_id, MetadataRequest([]))


def partitions_of_sync(client: KafkaConsumer, topic: str) -> list[int]:
    """The partition ids of ``topic`` for a kafka-python consumer (it fetches metadata for
    a topic it does not know yet)."""
    return sorted(client.partitions_for_topic(topic) or ())
