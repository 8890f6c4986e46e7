"""The API's read model: ``dispatch.events`` folded with ``schemas.Projection``.

One aiokafka consumer, no consumer group: it assigns every partition and reads from the
newest usable checkpoint (``api.checkpoint``: the fold's state at a log position, which
this model also writes every ``readmodel_checkpoint_s`` seconds or ``_events`` events) or,
without one, from the log start, so each API process rebuilds current state by itself at
start (readiness = its position has reached the end offsets it saw when it started). For
every record it folds the event, builds the live message once (id = the log position after
it), keeps it in the resume ring (``api.ring.ResumeRing``), hands it to the hub, and
settles the HTTP requests waiting for that command's outcome (``api.outcomes.Outcomes``).

Until it is ready its state is a prefix of the log: the live feed, and commands naming an
entity it does not know yet, answer 503 with ``Retry-After`` (``require_ready``) rather
than a snapshot or a 404 that would be behind. Folding costs 0.1-0.2 ms per record on the
2-core test machine (40k ``unit_location`` events: 8 s), so that window is 10-20 s per
100k events of log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError as AioKafkaError

from api.broadcast import SNAPSHOT, Hub, LiveMessage, build_message, event_message
from api.checkpoint import Checkpoint, CheckpointWriter, Fingerprint, fingerprint
from api.checkpoint import load as load_checkpoint
from api.http import ApiError
from api.metrics import ApiMetrics
from api.outcomes import Outcomes
from api.ring import ResumeRing
from dispatchwire.errors import DispatchwireError
from dispatchwire.settings import Settings
from infra.clients import aio_consumer, metadata_round_trip, partitions_of
from schemas.codec import SchemaError, decode_event, dumps
from schemas.entities import Emergency, Entity
from schemas.events import EmergencyCreated
from schemas.position import Position, format_position
from schemas.projection import Projection

log = logging.getLogger(__name__)

NOT_READY_RETRY_AFTER_S = 2  # seconds: short, a bootstrap folds thousands of records a second


class EntityTexts:
    """The JSON text of each entity of one kind, kept while it is the same object.

    The fold replaces an entity when it changes (entities are frozen), so the state's text
    is re-encoded only for what changed since it was last asked for. A snapshot is cached
    only until the log position moves, and with a city's fleet moving that is every few
    milliseconds: without this, every client connecting cost a whole state's encoding on
    the event loop (~25 ms for 1,000 units and a few hundred emergencies)."""

    __slots__ = ("_encode", "_known")

    def __init__(self, encode: Callable[[Any], str]) -> None:
        self._encode = encode
        self._known: dict[str, tuple[object, str]] = {}

    def texts(
        self, entities: Mapping[str, Entity], keep: Callable[[Entity], bool] | None = None
    ) -> list[str]:
        """The texts of ``entities`` that ``keep`` (if given) keeps, sorted by id."""
        known = self._known
        fresh: dict[str, tuple[object, str]] = {}
        out = []
        for key in sorted(entities):
            entity = entities[key]
            hit = known.get(key)
            if hit is not None and hit[0] is not entity:
                hit = None
            if keep is not None and not keep(entity):
                if hit is not None:
                    fresh[key] = hit
                continue
            if hit is None:
                hit = (entity, self._encode(entity))
            fresh[key] = hit
            out.append(hit[1])
        self._known = fresh  # what left the state is forgotten with it
        return out


def _entity_text(entity: Entity) -> str:
    return dumps(entity.model_dump(mode="json"))


def _redacted_text(emergency: Emergency) -> str:
    return dumps(without_reporter(emergency.model_dump(mode="json")))


def events_consumer(settings: Settings, client_id: str) -> AIOKafkaConsumer:
    return aio_consumer(
        settings,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15_000,
        retry_backoff_ms=200,
        # read_committed hides a transactional worker's aborted writes
        isolation_level="read_committed",
    )


STOP_CHECKPOINT_S = 10.0  # at most this long writing the checkpoint at shutdown


class ReadModel:
    def __init__(self, settings: Settings, hub: Hub, metrics: ApiMetrics) -> None:
        self.settings = settings
        self.hub = hub
        self.metrics = metrics
        # archived ids are remembered as long as the setting says (issue 16: bounded)
        self.projection = Projection(archive_memory=timedelta(seconds=settings.archive_memory_s))
        self.offsets: list[int] = []  # next offset per partition
        self.last: list[Fingerprint | None] = []  # per partition, the last record folded
        self.partitions = 0
        self.target: Position | None = None  # end offsets seen at start
        self.ready = False
        self.kafka_ok = False
        self.last_error: str | None = None
        self.ring = ResumeRing(settings.api_ring_size)  # recent messages, for resume
        self.outcomes = Outcomes()  # requests waiting for their command's outcome
        self._snapshots: dict[tuple[object, ...], LiveMessage] = {}
        self._snapshot_at: Position | None = None
        self._texts = {
            "emergencies": EntityTexts(_entity_text),
            "redacted": EntityTexts(_redacted_text),
            "units": EntityTexts(_entity_text),
        }
        self._burst = max(settings.client_queue_size // 2, 1)
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._progress: asyncio.Event | None = None  # set (and dropped) when offsets move
        # checkpoints (issue 16): the one this model started from, and the writing side
        self.checkpoints_on = settings.readmodel_checkpoint_s > 0
        self.started_from: Position | None = None  # the checkpoint's position, if any
        self.checkpointed: Position | None = None  # the position of the last one written
        self._folded_since_checkpoint = 0
        self._writer = CheckpointWriter(settings)
        self._writer_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="read-model")
        if self.checkpoints_on:
            self._writer_task = loop.create_task(self._checkpoints(), name="checkpoints")

    async def stop(self) -> None:
        for task in (self._writer_task, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._writer_task = None
        if self.checkpoints_on and self.ready and self.checkpointed != self.position:
            # the state at shutdown, so a restart folds nothing that this model had folded
            try:
                await asyncio.wait_for(self.write_checkpoint(), STOP_CHECKPOINT_S)
            except (AioKafkaError, OSError, DispatchwireError, TimeoutError) as exc:
                log.warning(
                    "no read-model checkpoint at shutdown (%s: %s); a restart folds the "
                    "events since the last one",
                    type(exc).__name__,
                    exc,
                )
        await self._writer.stop()

    @property
    def started(self) -> bool:
        return self.partitions > 0

    def require_ready(self, what: str) -> None:
        """Raise 503 with ``Retry-After`` unless the bootstrap is done: before it, the state
        is a prefix of the log, and a snapshot or a lookup of it would be behind."""
        if self.ready:
            return
        if not self.started:
            reason = (
                f"the read model has not reached Kafka at {self.settings.kafka_bootstrap}"
                " yet (DISPATCHWIRE_KAFKA_BOOTSTRAP)"
            )
        else:
            target = format_position(self.target) if self.target is not None else "?"
            reason = (
                f"the read model is still reading {self.settings.events_topic} "
                f"(at {self.position_id} of {target})"
            )
        raise ApiError(
            503,
            f"{what} is not ready: {reason}; retry later",
            headers={"Retry-After": str(NOT_READY_RETRY_AFTER_S)},
        )

    def has_reached(self, position: Position) -> bool:
        return all(o >= p for o, p in zip(self.offsets, position, strict=False))

    async def reach(self, position: Position, timeout: float) -> bool:
        """Wait until every partition has reached ``position``; False after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.has_reached(position):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self.moved(remaining)
        return True

    async def moved(self, timeout: float) -> bool:
        """Wait until the model folds its next batch; False after ``timeout``."""
        if self._progress is None:
            self._progress = asyncio.Event()
        try:
            await asyncio.wait_for(self._progress.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def end_offsets(self, timeout: float = 5.0) -> Position | None:
        """The log's end per partition, asked of the broker now; None if it cannot say."""
        consumer = self._consumer
        if consumer is None:
            return None
        tps = [TopicPartition(self.settings.events_topic, p) for p in range(self.partitions)]
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout)
        except (TimeoutError, AioKafkaError, OSError) as exc:
            log.info("no end offsets for %s: %s", self.settings.events_topic, exc)
            return None
        return Position(ends[tp] for tp in tps)

    @property
    def position(self) -> Position:
        return Position(self.offsets)

    @property
    def position_id(self) -> str:
        return format_position(self.offsets)

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            consumer = events_consumer(self.settings, "dispatchwire-api-readmodel")
            try:
                await consumer.start()
                self._consumer = consumer
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except (AioKafkaError, OSError) as exc:
                self.kafka_ok = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "read model lost Kafka at %s (%s); retrying in %.1fs",
                    self.settings.kafka_bootstrap,
                    self.last_error,
                    backoff,
                )
            finally:
                self._consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        topic = self.settings.events_topic
        warned = False
        while True:
            found = await partitions_of(consumer, topic)  # a fresh metadata fetch
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            if not warned:
                log.warning(
                    "topic %s does not exist yet; waiting (`dispatchwire worker` or "
                    "the api creates it)",
                    topic,
                )
                warned = True
            await asyncio.sleep(1.0)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        tps = await self._partitions(consumer)
        self._resize(len(tps))
        consumer.assign(tps)
        if self.target is None:
            begins = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            start = Position(begins[tp] for tp in tps)
            target = Position(ends[tp] for tp in tps)
            checkpoint = None
            if self.checkpoints_on:
                checkpoint = await load_checkpoint(self.settings, start, target)
            if checkpoint is not None:
                self._restore(checkpoint, start)
                start = self.position
            for tp in tps:
                self.offsets[tp.partition] = start[tp.partition]
                self.ring.starts_at(tp.partition, start[tp.partition])
            self.target = target
            log.info(
                "read model bootstrapping %s from %s up to %s",
                self.settings.events_topic,
                f"the checkpoint at {format_position(start)}" if checkpoint else "the log start",
                format_position(self.target),
            )
        for tp in tps:
            consumer.seek(tp, self.offsets[tp.partition])
        self.kafka_ok = True
        self.last_error = None
        await self._check_ready(consumer, tps)
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
            folded = 0
            for tp in sorted(batches, key=lambda t: t.partition):
                for record in batches[tp]:
                    self._fold(record.partition, record.offset, record.value, record.timestamp)
                    folded += 1
                    if folded % self._burst == 0:
                        # let the clients' senders drain their queues mid-batch, so a
                        # burst larger than a queue overflows only clients that are slow
                        await asyncio.sleep(0)
            if folded:
                self._moved()
            lag = 0
            for tp in tps:
                high = consumer.highwater(tp)
                if high is not None:
                    lag += max(0, high - self.offsets[tp.partition])
            self.metrics.consumer_lag.set(lag)
            if not self.ready:
                await self._check_ready(consumer, tps)

    async def _check_ready(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        assert self.target is not None
        for tp in tps:
            behind = tp.partition < len(self.target) and (
                await consumer.position(tp) < self.target[tp.partition]
            )
            if behind:
                return
        self.ready = True
        self._moved()
        log.info(
            "read model caught up at %s (%d emergencies, %d units)",
            self.position_id,
            len(self.projection.emergencies),
            len(self.projection.units),
        )

    def _moved(self) -> None:
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.set()

    def _resize(self, partitions: int) -> None:
        if partitions < self.partitions:
            raise RuntimeError(f"{self.settings.events_topic} lost partitions")
        grow = partitions - self.partitions
        self.offsets.extend([0] * grow)
        self.last.extend([None] * grow)
        self.ring.resize(partitions)
        self.partitions = partitions

    # --- folding -----------------------------------------------------------------------

    def _fold(self, partition: int, offset: int, value: bytes | None, timestamp: int) -> None:
        self.last[partition] = fingerprint(value, timestamp)
        self._folded_since_checkpoint += 1
        try:
            event = decode_event(value or b"")
        except SchemaError as exc:
            log.warning(
                "skipping undecodable record %s[%d]@%d: %s",
                self.settings.events_topic,
                partition,
                offset,
                exc,
            )
            self.offsets[partition] = offset + 1
            return
        self.projection.apply(event)
        self.offsets[partition] = offset + 1
        if not event.live:  # a retry's answer (command_repeated): for its waiters only
            self.outcomes.settle(event)
            return
        message = event_message(event, self.offsets, partition, offset)
        self.ring.remember(message)
        self.hub.publish(message)
        self.metrics.events_consumed.inc()
        if self.ready and isinstance(event, EmergencyCreated):
            age = (datetime.now(UTC) - event.emergency.reported_at).total_seconds()
            self.metrics.report_to_delivery.observe(max(age, 0.0))
        self.outcomes.settle(event)

    # --- checkpoints ---------------------------------------------------------------------

    def _restore(self, checkpoint: Checkpoint, begins: Position) -> None:
        memory = self.projection.archive_memory
        self.projection = checkpoint.restore(memory)
        position = checkpoint.padded(begins)
        self.offsets[:] = position
        self.last[:] = [*checkpoint.last, *[None] * (len(position) - len(checkpoint.last))]
        self.started_from = self.checkpointed = checkpoint.position
        self._folded_since_checkpoint = 0
        log.info(
            "read model starts from the checkpoint at %s written %s by %s "
            "(%d emergencies, %d units, %d archived)",
            format_position(checkpoint.position),
            checkpoint.written_at.isoformat(),
            checkpoint.writer,
            len(checkpoint.emergencies),
            len(checkpoint.units),
            len(checkpoint.archived),
        )

    def checkpoint_due(self, since_s: float) -> bool:
        """Whether a checkpoint should be written now, ``since_s`` after the last one."""
        if not self.ready or self.checkpointed == self.position:
            return False
        return (
            since_s >= self.settings.readmodel_checkpoint_s
            or self._folded_since_checkpoint >= self.settings.readmodel_checkpoint_events
        )

    async def write_checkpoint(self) -> Position:
        """Write a checkpoint of the state now; its position."""
        checkpoint = Checkpoint.capture(
            self.projection, self.settings.events_topic, self.offsets, self.last
        )
        self._folded_since_checkpoint = 0
        size = await self._writer.write(checkpoint)
        self.checkpointed = checkpoint.position
        log.info(
            "read-model checkpoint at %s written (%d bytes)",
            format_position(checkpoint.position),
            size,
        )
        return checkpoint.position

    async def _checkpoints(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        tick = min(self.settings.readmodel_checkpoint_s, 1.0)
        while True:
            await asyncio.sleep(tick)
            if not self.checkpoint_due(loop.time() - last):
                continue
            try:
                await self.write_checkpoint()
            except (AioKafkaError, OSError, DispatchwireError) as exc:
                log.warning(
                    "could not write a read-model checkpoint to %s (%s: %s); retrying later",
                    self.settings.readmodel_topic,
                    type(exc).__name__,
                    exc,
                )
            last = loop.time()

    def snapshot(
        self, regions: frozenset[str] | None = None, reset: bool = False, redact: bool = False
    ) -> LiveMessage:
        """The current state as one ``snapshot`` message (cached until the position moves);
        ``redact``: without reporters' names and phones (a unit token's)."""
        position = self.position
        if position != self._snapshot_at:
            self._snapshots.clear()
            self._snapshot_at = position
        key = (tuple(sorted(regions)) if regions is not None else None, reset, redact)
        cached = self._snapshots.get(key)
        if cached is None:
            data = self.state_text(regions, redact, reset=reset)
            cached = build_message(SNAPSHOT, self.position_id, data)
            self._snapshots[key] = cached
        return cached

    def state_text(
        self, regions: frozenset[str] | None = None, redact: bool = False, reset: bool | None = None
    ) -> str:
        """The state as JSON text: ``{"emergencies": [...], "units": [...], "position": id}``
        (and ``"reset"`` if given), each list as ``emergencies_text`` and ``units_text``."""
        tail = "" if reset is None else f',"reset":{dumps(reset)}'
        return (
            f'{{"emergencies":{self.emergencies_text(regions, redact)},'
            f'"units":{self.units_text(regions)},"position":{dumps(self.position_id)}{tail}}}'
        )

    def emergencies_text(self, regions: frozenset[str] | None = None, redact: bool = False) -> str:
        """The emergencies as a JSON array sorted by id, those of ``regions`` only if given,
        reporters left out if ``redact``; joined from each one's kept text (``EntityTexts``)."""
        kind = "redacted" if redact else "emergencies"
        texts = self._texts[kind].texts(self.projection.emergencies, _in(regions))
        return f"[{','.join(texts)}]"

    def units_text(self, regions: frozenset[str] | None = None) -> str:
        """The units as a JSON array sorted by id (those of ``regions`` only, if given)."""
        return f"[{','.join(self._texts['units'].texts(self.projection.units, _in(regions)))}]"

    async def kafka_reachable(self, timeout: float = 2.0) -> bool:
        consumer = self._consumer
        if consumer is None or not self.kafka_ok:
            return False
        try:
            # not ``consumer.topics()``: it parses every topic's metadata on this loop
            await asyncio.wait_for(metadata_round_trip(consumer._client), timeout)
            return True
        except (TimeoutError, AioKafkaError, OSError):
            return False


def without_reporter(emergency: dict[str, Any]) -> dict[str, Any]:
    """An emergency (JSON) with its reporter left out (``null``): what a unit token reads."""
    return {**emergency, "reporter": None} if emergency.get("reporter") else emergency


def _in(regions: frozenset[str] | None) -> Callable[[Any], bool] | None:
    return None if regions is None else (lambda entity: entity.region in regions)
