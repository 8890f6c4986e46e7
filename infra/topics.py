"""Create the project's topics with the partition counts the design expects, and place
each region's records on its partition (``schemas.placement``) from every producer."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError as _KafkaError
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner import Partitioner

from dispatchwire.errors import KafkaUnavailable
from dispatchwire.settings import Settings
from schemas.placement import RegionPartitioner

log = logging.getLogger(__name__)


def region_partitioner(settings: Settings) -> RegionPartitioner:
    """The partitioner of aiokafka and Faust producers: a region to its own partition."""
    return RegionPartitioner(settings.regions)


class KafkaPythonRegionPartitioner(Partitioner):
    """``schemas.placement.RegionPartitioner`` in kafka-python's partitioner interface."""

    def __init__(self, regions: tuple[str, ...]) -> None:
        self.placement = RegionPartitioner(regions)

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster) -> int:  # type: ignore[no-untyped-def]
        ids = sorted(cluster.partitions_for_topic(topic))
        available = list(cluster.available_partitions_for_topic(topic) or ())
        return self.placement(serialized_key, ids, available)


def kafka_python_partitioner(settings: Settings) -> KafkaPythonRegionPartitioner:
    """The same placement for ``kafka.KafkaProducer(partitioner=...)``."""
    return KafkaPythonRegionPartitioner(settings.regions)


def admin_client(settings: Settings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="dispatchwire-admin",
            request_timeout_ms=10_000,
        )
    except (_KafkaError, OSError) as exc:
        raise KafkaUnavailable(settings.kafka_bootstrap, str(exc)) from exc


def ensure_topics(settings: Settings) -> list[str]:
    """Create ``dispatch.commands``, ``dispatch.events`` and the dead-letter topic if missing.

    Commands and events share a partition count so a region's commands and events land on
    partitions with the same number (co-partitioning for the Faust tables).
    """
    wanted = {
        settings.commands_topic: settings.partitions,
        settings.events_topic: settings.partitions,
        settings.dead_letter_topic: 1,
    }
    admin = admin_client(settings)
    created = []
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=n, replication_factor=settings.replication_factor)
            for name, n in wanted.items()
            if name not in existing
        ]
        for topic in new:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
    except _KafkaError as exc:
        raise KafkaUnavailable(settings.kafka_bootstrap, str(exc)) from exc
    finally:
        admin.close()
    if created:
        log.info("created topics %s", ", ".join(created))
    return created
