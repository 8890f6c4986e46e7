"""The worker group's committed offsets and the topics' end offsets, read from the broker."""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from dispatchwire.settings import Settings
from tests.conftest import wait_for


def committed_and_end(
    settings: Settings, topic: str | None = None
) -> dict[int, tuple[int | None, int]]:
    """Per partition of ``topic`` (default: commands), the worker group's committed offset
    (None if nothing is committed) and the partition's end offset."""
    topic = topic or settings.commands_topic
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = consumer.end_offsets(tps)
        committed = admin.list_group_offsets({settings.app_id: tps})[settings.app_id]
        out = {}
        for tp in tps:
            meta = committed.get(tp)
            out[tp.partition] = (
                meta.offset if meta is not None and meta.offset >= 0 else None,
                ends[tp],
            )
        return out
    finally:
        consumer.close()
        admin.close()


def lagging_partitions(settings: Settings) -> dict[int, tuple[int | None, int]]:
    """Commands partitions whose committed offset is short of the end."""
    return {p: (c, e) for p, (c, e) in committed_and_end(settings).items() if c != e}


def set_topic_config(settings: Settings, topic: str, **configs: str) -> None:
    """Alter a topic's configs (``max_message_bytes="2000000"`` -> ``max.message.bytes``)
    and return once the broker describes them so: it applies an alteration a moment after
    acknowledging it, and a record sent in between still met the old limit (a worker
    without producer linger got its dead letter through)."""
    wanted = {name.replace("_", "."): value for name, value in configs.items()}
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=wanted)])

        def applied() -> bool:
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            current = described["topic"][topic]
            # (a config the broker has not applied yet may be missing from the answer)
            return all(current.get(name, {}).get("value") == v for name, v in wanted.items())

        wait_for(applied, timeout=30, message=f"the broker to apply {wanted} to {topic}")
    finally:
        admin.close()
