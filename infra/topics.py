"""Create the project's topics with the partition counts the design expects."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError as _KafkaError
from kafka.errors import TopicAlreadyExistsError

from dispatchwire.errors import KafkaUnavailable
from dispatchwire.settings import Settings
from infra.credentials import broker_credentials, refused_credentials

log = logging.getLogger(__name__)


def admin_client(settings: Settings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="dispatchwire-admin",
            request_timeout_ms=10_000,
            **broker_credentials(settings, "kafka-python"),
        )
    except (_KafkaError, OSError) as exc:
        raise refused_credentials(settings, exc) or KafkaUnavailable(
            settings.kafka_bootstrap, str(exc)) from exc


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
            NewTopic(name, num_partitions=n, replication_factor=settings.replication_factor,
                     # with acks=all, a write needs this many replicas (issue 14: 2 of 3)
                     topic_configs={"min.insync.replicas": str(settings.min_insync_replicas)})
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
