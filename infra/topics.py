"""Create the project's topics with the partition counts the design expects, and place
each region's records on its partition (``schemas.placement``) from every producer."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError as _KafkaError
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner import Partitioner

from dispatchwire.errors import KafkaUnavailable
from dispatchwire.settings import Settings
from infra import clients
from schemas.placement import RegionPartitioner

log = logging.getLogger(__name__)


def region_partitioner(settings: Settings) -> RegionPartitioner:
    """The partitioner of aiokafka and Faust producers: a region to its own partition."""
    return RegionPartitioner(settings.regions)


class KafkaPythonRegionPartitioner(Partitioner):
    """``schemas.placement.RegionPartitioner`` in kafka-python's partitioner interface."""

    def __init__(self, regions: tuple[str, ...]) -> None:
        self.placement = RegionPartitioner(regions)

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster) -> int:
        ids = sorted(cluster.partitions_for_topic(topic))
        available = list(cluster.available_partitions_for_topic(topic) or ())
        return self.placement(serialized_key, ids, available)


def kafka_python_partitioner(settings: Settings) -> KafkaPythonRegionPartitioner:
    """The same placement for ``kafka.KafkaProducer(partitioner=...)``."""
    return KafkaPythonRegionPartitioner(settings.regions)


def admin_client(settings: Settings) -> KafkaAdminClient:
    return clients.admin(settings)


def ensure_topics(settings: Settings) -> list[str]:
    """Create ``dispatch.commands``, ``dispatch.events`` and the dead-letter topic if missing.

    Commands and events share a partition count so a region's commands and events land on
    partitions with the same number (co-partitioning for the Faust tables).
    """
    wanted = {
        settings.commands_topic: settings.partitions,
        settings.events_topic: settings.partitions,
        settings.dead_letter_topic: 1,
        settings.units_topic: settings.partitions,  # compacted (issue 15, fleet view)
    }
    admin = admin_client(settings)
    created = []
    try:
        with clients.kafka_errors(settings, "creating the topics"):
            existing = set(admin.list_topics())
            new = [
                NewTopic(
                    name,
                    num_partitions=n,
                    replication_factor=settings.replication_factor,
                    # with acks=all, a write needs this many replicas (issue 14: 2 of 3)
                    topic_configs={
                        "min.insync.replicas": str(settings.min_insync_replicas),
                        **({"cleanup.policy": "compact"} if name == settings.units_topic else {}),
                    },
                )
                for name, n in wanted.items()
                if name not in existing
            ]
            for topic in new:
                try:
                    admin.create_topics([topic])
                    created.append(topic.name)
                except TopicAlreadyExistsError:
                    pass
    finally:
        admin.close()
    if created:
        log.info("created topics %s", ", ".join(created))
    return created


# The largest read-model checkpoint (api/checkpoint.py) the topic and its clients take: a
# checkpoint holds the live state and a week of archive events (~300 bytes each, gzip
# takes them to a tenth), far below this.
CHECKPOINT_MAX_BYTES = 64 * 1024 * 1024


def ensure_readmodel_topic(settings: Settings) -> None:
    """Create the read-model checkpoint topic if missing: one partition, compacted (the
    latest checkpoint per key is what counts), records up to ``CHECKPOINT_MAX_BYTES``."""
    admin = admin_client(settings)
    try:
        with clients.kafka_errors(settings, f"creating topic {settings.readmodel_topic}"):
            if settings.readmodel_topic not in set(admin.list_topics()):
                with contextlib.suppress(TopicAlreadyExistsError):  # another replica did
                    admin.create_topics(
                        [
                            NewTopic(
                                settings.readmodel_topic,
                                num_partitions=1,
                                replication_factor=settings.replication_factor,
                                topic_configs={
                                    "cleanup.policy": "compact",
                                    "max.message.bytes": str(CHECKPOINT_MAX_BYTES),
                                    "segment.ms": "3600000",
                                    "min.insync.replicas": str(settings.min_insync_replicas),
                                },
                            )
                        ]
                    )
    finally:
        admin.close()


def ensure_topic_like(settings: Settings, topic: str, partitions: int | None = None) -> None:
    """Create ``topic`` (``partitions``, default the events topic's count) if missing, so
    keys land alike (a replay's or an import's target)."""
    admin = admin_client(settings)
    try:
        with clients.kafka_errors(settings, f"creating topic {topic}"):
            if topic not in set(admin.list_topics()):
                with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                    admin.create_topics(
                        [
                            NewTopic(
                                topic,
                                num_partitions=partitions or settings.partitions,
                                replication_factor=settings.replication_factor,
                            )
                        ]
                    )
    finally:
        admin.close()


def wait_for_group_coordinators(
    settings: Settings, group_ids: Iterable[str], timeout_s: float = 30.0
) -> float:
    """Return once the broker names a coordinator for every consumer group; the seconds it took.

    A fresh broker creates ``__consumer_offsets`` on the first FindCoordinator request and
    answers COORDINATOR_NOT_AVAILABLE until its partitions are loaded (about a second here).
    A consumer that asks in that window logs the retry at ERROR (aiokafka: "Group
    Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError") although it
    then joins normally; ``dispatchwire run`` asks first, so that line is not on its screen.
    """
    groups = sorted(set(group_ids))
    start = time.monotonic()
    admin = admin_client(settings)
    try:
        while True:
            try:
                admin.describe_groups(groups)
                return time.monotonic() - start
            except _KafkaError as exc:
                if not getattr(exc, "retriable", False) or time.monotonic() - start > timeout_s:
                    raise KafkaUnavailable(
                        settings.kafka_bootstrap,
                        f"no group coordinator for {', '.join(groups)} after "
                        f"{time.monotonic() - start:.0f}s: {exc}",
                    ) from exc
                log.debug("waiting for the group coordinator: %s", exc)
                time.sleep(0.2)
    finally:
        admin.close()
