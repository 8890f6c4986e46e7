"""The Faust app: one agent turns commands into events against the state table.

Flow, per region (= Kafka key = partition)::

    dispatch.commands --> apply_commands --> decide() --> table (changelog) + dispatch.events
            ^                                                    |
            +------------- movement timer (unit_position) <------+ reads moving units

Crash safety. Faust is at-least-once: it flushes the producer before committing a source
offset, so after a crash the commands after the last committed offset run again, against
a table that may already hold some of their effects. For every command we therefore write
its *record* (the events and entity states it produced) to the table FIRST, then the
entity states, then publish the events. All of it goes to one changelog partition, in that
order, so after a crash the table holds, for the command that was cut off, either nothing
(it runs again against exactly the state it first saw, with the record's timestamp as
``now``, so it decides the same) or its record (we re-store the record's entity states,
which never overwrite newer versions, and re-publish its events with the same event ids).
A client's retry of a command id is the same case: one effect, events re-published.

We chose this over ``processing_guarantee="exactly_once"``: Faust's transactional mode
needs one producer per partition and fences on rebalance, adds a commit round-trip per
transaction, and would still not cover a client retrying a command id. The record makes
redelivery harmless whatever its cause, and consumers dedupe by event id anyway.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust

from dispatchwire.settings import Settings
from schemas import SchemaError, UnitPosition, decode_command, encode
from streams.decisions import decide, movement_command_id
from streams.roadgraph import network_for
from streams.routing import GraphRouter, Router
from streams.state import TABLE_NAME, DispatchState

log = logging.getLogger(__name__)

# Short enough that a worker restarted after a crash takes over its partitions in seconds
# (the group waits this long for the dead member), long enough for a busy event loop.
SESSION_TIMEOUT_S = 10.0
# The timer does not resend the same move command sooner than this (the worker may lag).
RESEND_AFTER_S = 5.0


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{hostport.strip()}" for hostport in bootstrap.split(","))


def create_faust_app(settings: Settings, router: Router | None = None) -> faust.App:
    """Build the worker's app: topics, the state table, the agent, the timer, the pages."""
    web_port = settings.worker_web_port
    datadir = Path(settings.data_dir) / "faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=broker_url(settings.kafka_bootstrap),
        store="memory://",
        # the table's keys and values are JSON; our own topics say "raw" explicitly
        key_serializer="json",
        value_serializer="json",
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=SESSION_TIMEOUT_S * 2,
        datadir=str(datadir),
        web_enabled=web_port > 0,
        web_port=max(web_port, 1),
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_in_thread=False,
    )
    router = router or GraphRouter(network_for(settings))
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": settings.partitions}
    commands = app.topic(settings.commands_topic, **raw)
    events = app.topic(settings.events_topic, **raw)
    dead_letters = app.topic(settings.dead_letter_topic, **raw)
    table = app.Table(TABLE_NAME, partitions=settings.partitions)
    state = DispatchState(table)
    tick_s = settings.tick_seconds

    async def publish(outcome_events: list[Any]) -> None:
        for event in outcome_events:
            await events.send(key=event.region.encode(), value=encode(event))

    @app.agent(commands, name="apply_commands", concurrency=1)
    async def apply_commands(stream: faust.Stream) -> None:
        async for message in stream.events():
            try:
                command = decode_command(message.value)
            except SchemaError as exc:
                log.warning("undecodable command at %s[%s]@%s sent to %s: %s",
                            message.message.topic, message.message.partition,
                            message.message.offset, settings.dead_letter_topic, exc)
                await dead_letters.send(key=message.key, value=message.value,
                                        headers={"error": str(exc)[:1000].encode()})
                continue
            is_tick = isinstance(command, UnitPosition) and command.lat is None
            key = state.record_key(command.command_id, command.unit_id if is_tick else None)
            seen = state.record(key, command.command_id)
            if seen is not None:
                # Redelivered (crash replay or client retry): finish what the record says.
                state.apply(seen)
                await publish(seen.events)
                continue
            now = datetime.fromtimestamp(message.message.timestamp, UTC)
            outcome = decide(command, state, router, now, tick_s)
            if not outcome.events:
                continue  # a stale tick or a repeated registration: nothing happened
            state.put_record(key, command.command_id, outcome)
            state.apply(outcome)
            await publish(outcome.events)

    sent: dict[str, float] = {}

    @app.timer(interval=tick_s, name="move_units")
    async def move_units() -> None:
        """Ask the agent to move every dispatched unit one step (through the log, so a move
        is ordered with the region's other commands and idempotent by its command id)."""
        if app.rebalancing or not app.consumer.assignment():
            return
        now = time.monotonic()
        for unit in list(state.moving_units()):
            command_id = movement_command_id(unit.id, unit.emergency_id, unit.version)
            if now - sent.get(command_id, 0.0) < RESEND_AFTER_S:
                continue
            sent[command_id] = now
            cmd = UnitPosition(command_id=command_id, region=unit.region, unit_id=unit.id,
                               tick=unit.version, issued_by="worker")
            await commands.send(key=unit.region.encode(), value=encode(cmd))
        for command_id, at in list(sent.items()):
            if now - at > 4 * RESEND_AFTER_S:
                del sent[command_id]

    @app.page("/dispatch/state/")
    async def state_page(web: Any, request: Any) -> Any:
        """The table's emergencies and units (this worker's partitions), for tests and ops."""
        return web.json(state.snapshot())

    @app.page("/dispatch/ready/")
    async def ready_page(web: Any, request: Any) -> Any:
        assigned = sorted(tp.partition for tp in app.consumer.assignment()
                          if tp.topic == settings.commands_topic)
        ready = bool(assigned) and not app.rebalancing and not app.in_recovery \
            and app.tables.recovery.completed.is_set()
        return web.json({"ready": ready, "partitions": assigned}, status=200 if ready else 503)

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Run the worker until Ctrl-C / SIGTERM (Faust's worker installs the handlers)."""
    app = create_faust_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
