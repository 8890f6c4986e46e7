"""Issue 10, item 4: an undecodable command is acked only once it is on the dead-letter topic.

The probe's 1.04 MB poison record never reached ``dispatch.commands.dlq``: forwarding it whole
failed in Faust's producer (1,000,000 bytes at most) and the record was acked anyway.
"""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaProducer

from dispatchwire.settings import Settings
from schemas import SetUnitStatus, UnitStatus, encode
from streams.deadletters import DEAD_LETTER_MAX_VALUE_BYTES
from tests.conftest import WorkerProcess, wait_for
from tests.streams.helpers import EventLog
from tests.streams.kafka_offsets import committed_and_end, set_topic_config

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PROBE_RECORD_BYTES = 1_040_000  # what the probe sent; the broker takes it, Faust cannot send it
BROKER_DEFAULT_MAX_MESSAGE_BYTES = "1048588"


class Sender:
    """Raw records to the commands topic, returning (partition, offset) of each."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=4 * 1024 * 1024
        )

    def send(self, key: bytes, value: bytes) -> tuple[int, int]:
        meta = self.producer.send(self.settings.commands_topic, key=key, value=value).get(30)
        return meta.partition, meta.offset

    def sentinel(self, key: bytes) -> tuple[str, tuple[int, int]]:
        """A valid command after the poison on the same partition (its outcome shows the
        worker went past the poison)."""
        cmd = SetUnitStatus(
            region=key.decode(), unit_id="no-such-unit", status=UnitStatus.AVAILABLE
        )
        return cmd.command_id, self.send(key, encode(cmd))

    def close(self) -> None:
        self.producer.close()


@pytest.fixture
def sender(shared_worker: WorkerProcess):
    s = Sender(shared_worker.settings)
    yield s
    s.close()


@pytest.fixture
def dead_letters(shared_worker: WorkerProcess):
    log = EventLog(shared_worker.settings, topic=shared_worker.settings.dead_letter_topic)
    yield log
    log.close()


def dead_letter_from(log: EventLog, at: tuple[int, int], timeout: float = 60.0):
    partition, offset = str(at[0]).encode(), str(at[1]).encode()

    def found():
        log.poll()
        return [
            r
            for r in log.records
            if (dict(r.headers).get("original-partition"), dict(r.headers).get("original-offset"))
            == (partition, offset)
        ]

    return wait_for(found, timeout=timeout, message=f"the dead letter of {at}")[0]  # type: ignore[index]


def committed_past(settings: Settings, at: tuple[int, int]) -> bool:
    committed, _ = committed_and_end(settings)[at[0]]
    return committed is not None and committed > at[1]


def key() -> bytes:
    return f"poison-{uuid.uuid4().hex[:8]}".encode()


def test_a_poison_record_goes_to_the_dead_letter_topic_whole(
    shared_worker, sender, dead_letters, event_log
):
    k = key()
    value = b'{"kind": "report_emergency", "this is": not json'
    at = sender.send(k, value)
    sentinel, _ = sender.sentinel(k)
    record = dead_letter_from(dead_letters, at)
    headers = dict(record.headers)
    assert record.key == k and record.value == value
    assert headers["original-size"] == str(len(value)).encode()
    assert headers["original-topic"] == shared_worker.settings.commands_topic.encode()
    assert "truncated" not in headers
    assert headers["error"]
    event_log.wait_command(sentinel)
    wait_for(
        lambda: committed_past(shared_worker.settings, at),
        timeout=30,
        message="the committed offset past the poison record",
    )


def test_a_poison_record_over_the_producer_limit_is_dead_lettered_truncated(
    shared_worker, sender, dead_letters, event_log
):
    settings = shared_worker.settings
    set_topic_config(settings, settings.commands_topic, max_message_bytes="2000000")
    k = key()
    value = bytes(range(256)) * (PROBE_RECORD_BYTES // 256) + b"\xff" * (PROBE_RECORD_BYTES % 256)
    assert len(value) == PROBE_RECORD_BYTES
    at = sender.send(k, value)
    sentinel, _ = sender.sentinel(k)
    record = dead_letter_from(dead_letters, at)
    headers = dict(record.headers)
    assert record.value == value[:DEAD_LETTER_MAX_VALUE_BYTES]
    assert headers["original-size"] == str(PROBE_RECORD_BYTES).encode()
    assert headers["truncated"] == str(DEAD_LETTER_MAX_VALUE_BYTES).encode()
    assert headers["error"]
    event_log.wait_command(sentinel)
    wait_for(
        lambda: committed_past(settings, at),
        timeout=30,
        message="the committed offset past the poison record",
    )


def test_a_poison_record_is_not_acked_while_its_dead_letter_cannot_be_sent(
    shared_worker, sender, dead_letters, event_log
):
    settings = shared_worker.settings
    # The broker now refuses every dead letter bigger than 200 bytes.
    set_topic_config(settings, settings.dead_letter_topic, max_message_bytes="200")
    try:
        k = key()
        value = b"x" * 2_000
        log_before = len(shared_worker.log_tail(10**9))
        at = sender.send(k, value)
        sentinel, _ = sender.sentinel(k)
        wait_for(
            lambda: "not sent" in shared_worker.log_tail(10**9)[log_before:],
            timeout=60,
            message="the worker to log the failed dead-letter send",
        )
        # Not acked, so not committed, and the worker did not move on past it.
        assert not committed_past(settings, at)
        event_log.poll()
        assert not event_log.for_command(sentinel)
        set_topic_config(
            settings, settings.dead_letter_topic, max_message_bytes=BROKER_DEFAULT_MAX_MESSAGE_BYTES
        )
        record = dead_letter_from(dead_letters, at)
        assert record.value == value
        event_log.wait_command(sentinel)
        wait_for(
            lambda: committed_past(settings, at),
            timeout=30,
            message="the committed offset past the poison record",
        )
    finally:
        set_topic_config(
            settings, settings.dead_letter_topic, max_message_bytes=BROKER_DEFAULT_MAX_MESSAGE_BYTES
        )
