"""Faults under load (issue 10): each case runs the load driver (and live clients where
they matter), injects one fault into the real processes, lets the system recover, and has
the auditor check the whole events log. Each case records one row for the summary.

The cases share one stack in file order; each audits the whole log, so a later case also
re-checks what the earlier ones left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import httpx
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from schemas import RegisterUnit, ReportEmergency, UnitType
from schemas.events import EmergencyUpdated
from schemas.geo import load_network
from schemas.position import Position
from schemas.projection import Projection
from tests.conftest import wait_for
from tests.faults.auditor import (
    Auditor,
    ClientStats,
    DoubleHold,
    Outcomes,
    check_clients,
    table_differences,
)
from tests.faults.clients import LiveClients, first_message_on_resume
from tests.faults.conftest import soak_seconds
from tests.faults.driver import LoadDriver, new_command_id, random_report
from tests.faults.report import CaseRow
from tests.faults.stack import ChildProcess, Stack
from tests.streams.helpers import Commands, EventLog
from tests.streams.invariants import (
    assert_consistent,
    assert_no_divergent_duplicates,
    wait_consistent_fold,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(900)]

FAUST_COMMIT_INTERVAL_S = 2.8  # Faust's default broker_commit_interval
BACKLOG = 10_000  # commands waiting for the worker when it is killed (the backlog case)


def fixed_bug(holds: bool, message: str) -> None:
    """The check of a case that an outside probe's finding (issue 10) broke before its fix:
    each one failed on the code before the fixes were merged."""
    assert holds, message


def phase_s(short: float) -> float:
    """Seconds of load for one phase: ``short`` in ``make test``, the soak length in
    ``make soak``."""
    return max(short, soak_seconds())


def load_for(driver: LoadDriver, seconds: float) -> None:
    """Let the load run ``seconds`` and until at least one outcome came back in them."""
    since = time.monotonic()
    wait_for(
        lambda: time.monotonic() - since >= seconds and driver.answered_after(since),
        timeout=seconds + 120,
        interval=0.1,
        message=f"{seconds:.0f}s of answered load",
    )


@dataclass
class Audit:
    outcomes: Outcomes
    clients: ClientStats | None
    divergent: list[str]
    double_holds: list[str]
    api_differences: list[str]
    table_differences: list[str]


def settle_and_audit(
    stack: Stack, driver: LoadDriver, clients: LiveClients | None = None, also: Sequence[str] = ()
) -> Audit:
    """Stop the load (its retries finish), wait until every acknowledged command has an
    outcome in the log (bounded), then run every check of the auditor."""
    driver.stop()
    auditor = Auditor(stack.settings)
    try:

        def all_answered() -> bool:
            auditor.catch_up()
            return not auditor.outcomes(driver.sent, also).lost

        with contextlib.suppress(AssertionError):  # what stays unanswered is counted as lost
            wait_for(all_answered, timeout=90, interval=0.5, message="an outcome per command")
        state = stack.api.state()
        auditor.catch_up()
        api_diff = auditor.api_state_differences(state)

        def worker_differences() -> list[str]:
            auditor.catch_up()
            return table_differences(auditor.fold(), stack.worker.state())

        try:  # the worker may still be publishing a movement tick
            wait_for(
                lambda: not worker_differences(),
                timeout=30,
                interval=0.5,
                message="the worker's table to equal the fold",
            )
            table_diff: list[str] = []
        except AssertionError:
            auditor.catch_up()
            fold, table = auditor.fold(), stack.worker.state()  # (once: what differed is shown)
            table_diff = table_differences(fold, table)
            explain_table_differences(auditor, fold, table, table_diff)
        stats = None
        if clients is not None:
            position = auditor.live_position  # (a command_repeated reaches no client)
            wait_for(
                lambda: clients.all_reached(position),
                timeout=60,
                interval=0.2,
                message="every live client at the log end",
            )
            clients.stop()
            stats = check_clients(clients.recordings, auditor.silent_offsets())
        holds = auditor.double_holds()
        audit = Audit(
            auditor.outcomes(driver.sent, also),
            stats,
            auditor.divergent_event_ids(),
            [hold.text for hold in holds],
            api_diff,
            table_diff,
        )
        explain_double_holds(auditor, holds)
        explain_if_inconsistent(auditor)
        events = [e.event for e in auditor.events]
    finally:
        auditor.close()
    assert_no_divergent_duplicates(events)
    return audit


def explain_double_holds(auditor: Auditor, holds: list[DoubleHold]) -> None:
    """Print every event of the units and emergencies the first double holds name: what a
    unit on two emergencies (or an emergency held by two units) needs to be read."""
    for hold in holds[:3]:
        print(f"\ndouble hold {hold.text}; events of {hold.ids}:")
        print("\n".join(auditor.timeline(hold.ids)))


def explain_if_inconsistent(auditor: Auditor, wait_s: float = 30.0) -> None:
    """``assert_consistent`` on the fold of the log; if it fails, first print every event of
    the entities it names (the timeline) and whether the log turns consistent within
    ``wait_s`` (a late saga step) or stays so (two deciders: ``streams.lease``)."""
    try:
        assert_consistent(auditor.fold())
    except AssertionError as exc:
        ids = sorted(set(re.findall(r"\b(?:id|emergency_id)='([^']+)'", str(exc))))
        print(f"\ninconsistent fold: {str(exc)[:300]}\nevents of {ids}:")
        print("\n".join(auditor.timeline(ids)))

        def read() -> Projection:
            auditor.catch_up()
            return auditor.fold()

        started = time.monotonic()
        try:
            wait_consistent_fold(read, wait_s)
            print(f"consistent {time.monotonic() - started:.1f} s later")
        except AssertionError:
            print(f"still inconsistent {wait_s:.0f} s later")
        raise exc  # the first finding, not the wait's


def explain_table_differences(
    auditor: Auditor, fold: Projection, table: dict, differences: list[str]
) -> None:
    """Print, for each entity where the worker's table differs from the fold of the log, both
    versions and every event naming it: what a worker-table difference needs to be read.
    (Entity ids are unique across emergencies and units, so a difference's id is enough.)"""
    folded = fold.as_json()
    for difference in differences[:5]:
        key = difference.split(" ", 1)[1]
        mine = [e for part in ("emergencies", "units") for e in folded[part] if e["id"] == key]
        theirs = [e for part in ("emergencies", "units") for e in table[part] if e["id"] == key]
        print(f"\nworker table differs on {difference}:\n fold:  {mine}\n table: {theirs}")
        print("\n".join(auditor.timeline([key])))


def assert_green(audit: Audit) -> None:
    o = audit.outcomes
    assert o.acknowledged > 0, "the load driver got nothing acknowledged"
    assert not o.lost, f"{len(o.lost)} acknowledged commands without an outcome: {o.lost[:5]}"
    assert not o.two_outcomes, f"commands with two outcomes: {o.two_outcomes[:5]}"
    assert o.server_errors == 0, f"{o.server_errors} answers were 5xx other than 503"
    assert not audit.divergent, f"event ids with two bodies: {audit.divergent[:5]}"
    assert not audit.double_holds, audit.double_holds[:5]
    assert not audit.api_differences, f"/api/state differs: {audit.api_differences[:5]}"
    assert not audit.table_differences, f"worker table differs: {audit.table_differences[:5]}"
    if audit.clients is not None:
        c = audit.clients
        assert not c.problems, c.problems[:5]
        assert c.gaps == 0, f"live clients skipped {c.gaps} records"


def from_end(log: EventLog) -> None:
    """Move ``log`` to the current end of the events topic, resolved now (kafka-python's
    ``seek_to_end`` is lazy: resolved later, it would skip what is written meanwhile)."""
    log.consumer.seek_to_end()
    for tp in log.consumer.assignment():
        log.consumer.position(tp)


def recovery(driver: LoadDriver, fault_at: float, repaired_at: float) -> float | None:
    """Seconds from the fault until the first outcome answered after the repair."""
    answered = driver.answered_after(repaired_at)
    return None if answered is None else answered - fault_at


# --- cases ------------------------------------------------------------------------------


def test_fifty_concurrent_dispatches_assign_once(stack: Stack, record_row) -> None:
    """50 concurrent dispatches of one emergency, under load: exactly one assignment."""
    driver = LoadDriver(stack.api.url, seed=1).start()
    region = f"solo-{new_command_id('r')[-8:]}"
    unit_id = f"{region}-amb"
    commands = Commands(stack.settings)
    log = EventLog(stack.settings)
    try:
        register = RegisterUnit(
            command_id=new_command_id("reg"),
            region=region,
            unit_id=unit_id,
            callsign="SOLO",
            type=UnitType.AMBULANCE,
            lat=60.1757576,
            lon=24.9421563,
        )
        commands.send(register)
        log.wait_command(register.command_id)
        load_for(driver, phase_s(1.0))
        # Straight to the log: the API derives a report's region from its place and refuses
        # one chosen by the client, and this region is the test's own.
        report = ReportEmergency(
            command_id=new_command_id("rep"),
            region=region,
            type="medical",
            priority=1,
            lat=60.1757576,
            lon=24.9421563,
            description="fault suite",
        )
        commands.send(report)
        log.wait_command(report.command_id)
        emergency_id = report.emergency_id
        wait_for(
            lambda: (
                httpx.get(f"{stack.api.url}/api/emergencies/{emergency_id}", timeout=5).status_code
                == 200
            ),
            message="the API to know the report",
        )

        async def burst() -> list:
            return await asyncio.gather(
                *(
                    driver.send("dispatch", f"/api/emergencies/{emergency_id}/dispatch", {})
                    for _ in range(50)
                )
            )

        dispatches = driver.run_now(burst())
        load_for(driver, phase_s(1.0))
        audit = settle_and_audit(stack, driver)
    finally:
        commands.close()
        log.close()
        driver.stop()
    finals = [d.answered.status if d.answered else None for d in dispatches]
    log = EventLog(stack.settings)
    try:
        log.wait_command(dispatches[0].command_id)
        assigned = {
            e.event_id
            for e in log.poll()
            if isinstance(e, EmergencyUpdated)
            and e.action == "assigned"
            and e.emergency.id == emergency_id
        }
    finally:
        log.close()
    record_row(
        CaseRow(
            "50 concurrent dispatches",
            audit.outcomes,
            notes=f"assignments {len(assigned)}, 200s {finals.count(200)}, "
            f"409s {finals.count(409)}",
        )
    )
    assert_green(audit)
    assert len(assigned) == 1, assigned
    assert finals.count(200) == 1 and finals.count(409) == 49, finals


SMALL_POISON = b"\xff\xfe not json at all"
BIG_POISON = b"{" + b" " * 1_040_000 + b"}"  # 1.04 MB: the broker takes it, Faust's producer not


def test_poison_records_reach_the_dead_letter_topic(stack: Stack, record_row) -> None:
    """An undecodable record and one of 1.04 MB, under load: both dead-lettered, the
    worker goes on answering."""
    settings = stack.settings
    driver = LoadDriver(stack.api.url, seed=2).start()
    commands = Commands(settings)
    dead = EventLog(settings, topic=settings.dead_letter_topic)
    regions = [r.id for r in load_network().regions[:2]]
    rng = random.Random(3)
    try:
        load_for(driver, phase_s(1.0))
        commands.send_raw(regions[0].encode(), SMALL_POISON)
        commands.send_raw(regions[1].encode(), BIG_POISON)
        # Behind each poison record on its partition, a report: once both are answered,
        # the worker is past both poison records.
        sentinels = []
        for region in regions:
            cmd = random_report(load_network(), rng).model_copy(update={"region": region})
            sentinels.append(cmd.command_id)
            commands.send(cmd)
        load_for(driver, phase_s(1.0))
        audit = settle_and_audit(stack, driver, also=sentinels)

        def dead_lettered() -> tuple[bool, bool]:
            dead.poll()
            return (
                any(r.value == SMALL_POISON for r in dead.records),
                any(r.value[:16] == BIG_POISON[:16] for r in dead.records),
            )

        wait_for(
            lambda: dead_lettered()[0],
            timeout=30,
            message="the undecodable record in the dead-letter topic",
        )
        small, big = dead_lettered()
    finally:
        driver.stop()
        commands.close()
        dead.close()
    record_row(
        CaseRow(
            "poison records",
            audit.outcomes,
            notes=f"dead-lettered: undecodable {small}, 1.04 MB {big}",
        )
    )
    assert_green(audit)
    assert small
    # issue 10 item 4: forwarding it whole fails (MessageSizeTooLargeError) and it is acked
    fixed_bug(big, "the 1.04 MB record was acked without reaching the dead-letter topic")


def test_worker_sigkill_mid_backlog(stack: Stack, record_row) -> None:
    """SIGKILL the worker while it works through a backlog of a few thousand commands,
    under HTTP load with live clients; restart it. Reports retried (same command id) while
    it is down are answered 202; every answer must name the emergency that will exist."""
    settings = stack.settings
    clients = LiveClients(stack.api.url, sse=4, ws=1).start()
    driver = LoadDriver(stack.api.url, seed=4).start()
    commands = Commands(settings)
    log = EventLog(settings)
    try:
        wait_for(clients.connected, timeout=30, message="the live clients' snapshots")
        load_for(driver, phase_s(1.0))
        from_end(log)
        rng = random.Random(5)
        network = load_network()
        # big enough that the kill lands inside it: a worker works through some 5k commands
        # a second here, and the test sees its first outcome only a poll later
        backlog = [random_report(network, rng) for _ in range(BACKLOG)]
        backlog_ids = {c.command_id for c in backlog}
        commands.send_all(backlog)
        wait_for(
            lambda: any(e.command_id in backlog_ids for e in log.poll()),
            timeout=60,
            interval=0.02,
            message="the worker into the backlog",
        )
        stack.worker.kill()
        killed_at = time.monotonic()
        done_at_kill = len({e.command_id for e in log.poll()} & backlog_ids)
        # the outage lasts until a few reports sent now were answered 202 twice (retried
        # with the same id): the lanes of the steady load may all be busy retrying
        late_ids = {new_command_id("report") for _ in range(3)}
        reports = [driver.submit(driver.report(command_id=i)) for i in late_ids]

        def retried_late() -> bool:
            mine = [c for c in driver.sent if c.command_id in late_ids]
            return sum(1 for c in mine if sum(a.status == 202 for a in c.attempts) >= 2) >= 3

        wait_for(
            retried_late, timeout=60, message="reports answered 202 twice while the worker is down"
        )
        restart_at = time.monotonic()
        stack.worker.start()
        for report in reports:
            report.result(120)
        load_for(driver, phase_s(2.0))
        audit = settle_and_audit(stack, driver, clients, also=sorted(backlog_ids))
    finally:
        driver.stop()
        clients.stop()
        commands.close()
        log.close()
    existing = {e["id"] for e in stack.api.state()["emergencies"]}
    phantom = sorted(
        name
        for c in driver.sent
        if c.kind == "report" and c.acknowledged
        for name in c.named_emergencies()
        if name not in existing
    )
    record_row(
        CaseRow(
            f"worker SIGKILL, {BACKLOG:,} backlog",
            audit.outcomes,
            audit.clients,
            recovery(driver, killed_at, restart_at),
            notes=f"backlog done at kill {done_at_kill}, answers naming a "
            f"missing emergency {len(phantom)}",
        )
    )
    assert done_at_kill < len(backlog), "the worker finished the backlog before the kill"
    assert_green(audit)
    # issue 10 item 1: each retry builds a new ReportEmergency with a fresh emergency id
    fixed_bug(not phantom, f"{len(phantom)} answers name emergencies that never exist")


# Before its fix this failed in every one of 5 short runs; in a soak the restarted API had
# finished its bootstrap before any client came back, so there the bug could not show.
def test_api_sigkill_clients_resume(stack: Stack, record_row) -> None:
    """SIGKILL the API under load with many SSE and a few WebSocket clients; they
    reconnect to the restarted API with their last id."""
    sse, ws = (40, 3) if not soak_seconds() else (200, 2)
    clients = LiveClients(stack.api.url, sse=sse, ws=ws).start()
    driver = LoadDriver(stack.api.url, seed=7).start()
    commands = Commands(stack.settings)
    log = EventLog(stack.settings)
    try:
        wait_for(clients.connected, timeout=60, message="the live clients' snapshots")
        # A log of some thousands of records, so the restarted API takes a moment to
        # bootstrap its read model while the clients come back.
        network, rng = load_network(), random.Random(7)
        backlog = [random_report(network, rng) for _ in range(2_000)]
        from_end(log)
        commands.send_all(backlog)
        log.wait_command(backlog[-1].command_id, timeout=120)
        load_for(driver, phase_s(1.0))
        stack.api.kill()
        killed_at = time.monotonic()
        last_id = clients.recordings[0].last_id
        assert last_id is not None
        stack.api.start()  # at once: clients reconnect while it bootstraps its read model
        # and one client for sure: as early as the new API serves the stream
        probe = first_message_on_resume(stack.api.url, last_id)
        probe_behind = probe.event == "snapshot" and any(
            p < s
            for p, s in zip(Position.parse_id(probe.id), Position.parse_id(last_id), strict=True)
        )
        wait_for(stack.api.ready, timeout=60, interval=0.1, message="the api to be ready")
        load_for(driver, phase_s(1.0))
        audit = settle_and_audit(stack, driver, clients, also=[c.command_id for c in backlog])
    finally:
        driver.stop()
        clients.stop()
        commands.close()
        log.close()
    not_found = sum(1 for c in driver.sent for a in c.attempts if a.status == 404)
    c = audit.clients
    assert c is not None
    record_row(
        CaseRow(
            f"API SIGKILL, {sse} SSE + {ws} WS",
            audit.outcomes,
            c,
            recovery(driver, killed_at, killed_at),
            notes=f"reconnects {c.reconnects}, worst reset behind {c.worst_behind}, "
            f"probe {probe.event} at {probe.id} for {last_id}, 404s {not_found}",
        )
    )
    assert_green(audit)
    # issue 10 item 3: a resume id ahead of the bootstrapping read model gets a reset
    # snapshot behind it, and then the records between again
    fixed_bug(
        not probe_behind and c.resets_behind == 0 and c.duplicates == 0,
        f"{c.resets_behind} reset snapshots behind the client's id, {c.duplicates} "
        f"records delivered twice; the probe resuming from {last_id} got a {probe.event} "
        f"at {probe.id}",
    )


def _sink_rows(settings) -> int:
    from analytics.snapshot import take_snapshot
    from dispatchwire.errors import DispatchwireError

    if not settings.sink_db.exists():
        return 0
    try:
        return take_snapshot(settings, settings.data_dir / "probe.duckdb", timeout=30).events
    except DispatchwireError:
        return 0


def _sink_behind(settings) -> bool:
    """Whether the (stopped) sink's stored offsets are behind the events log's end."""
    con = duckdb.connect(str(settings.sink_db), read_only=True)
    try:
        stored = dict(con.execute('SELECT "partition", next_offset FROM sink_offsets').fetchall())
    finally:
        con.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        tps = [
            TopicPartition(settings.events_topic, p)
            for p in consumer.partitions_for_topic(settings.events_topic)
        ]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    return any(stored.get(tp.partition, 0) < end for tp, end in ends.items())


def test_sink_sigkill_mid_ingest(stack: Stack, record_row) -> None:
    """SIGKILL ``dispatchwire sink`` mid-ingest under load (twice; three times in a soak); a
    final run ends with one
    DuckDB row per event id of the log."""
    settings = stack.settings
    driver = LoadDriver(stack.api.url, seed=8).start()
    try:
        load_for(driver, phase_s(1.0))
        kills = mid_ingest = 0
        for _ in range(2 if not soak_seconds() else 3):
            before = _sink_rows(settings)
            stack.sink.start()
            wait_for(
                lambda b=before: _sink_rows(settings) > b,
                timeout=60,
                interval=0.2,
                message="the sink storing a batch",
            )
            stack.sink.kill()
            kills += 1
            mid_ingest += _sink_behind(settings)
            load_for(driver, phase_s(1.0))
        killed_at = time.monotonic()
        audit = settle_and_audit(stack, driver)
        final = ChildProcess(
            settings, stack.tmp / "sink-final.log", "sink", "--until-caught-up"
        ).start()
        assert final.proc is not None and final.proc.wait(180) == 0, final.log_tail()
        sunk_at = time.monotonic()
        auditor = Auditor(settings)
        try:
            auditor.catch_up()
            ids_at_end = {e.event.event_id for e in auditor.events}
        finally:
            auditor.close()
    finally:
        driver.stop()
        stack.sink.kill()
    con = duckdb.connect(str(settings.sink_db), read_only=True)
    try:
        rows, unique = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).fetchall()[0]
        stored = {r[0] for r in con.execute("SELECT event_id FROM events").fetchall()}
    finally:
        con.close()
    record_row(
        CaseRow(
            f"sink SIGKILL x{kills} mid-ingest",
            audit.outcomes,
            recovery_s=sunk_at - killed_at,
            notes=f"killed behind the log end {mid_ingest}/{kills}, rows {rows}, "
            f"distinct {unique}, event ids {len(ids_at_end)}",
        )
    )
    assert mid_ingest, "every kill found the sink caught up; nothing was cut mid-ingest"
    assert_green(audit)
    assert rows == unique, f"{rows - unique} duplicate rows"
    # the final run stops at the log end as of its start; ticks may add events after it
    assert stored <= ids_at_end and not (ids_at_end - stored) - _later_ids(settings, stored)


def _later_ids(settings, stored: set[str]) -> set[str]:
    """Event ids written after the final sink run started (unit movement goes on)."""
    auditor = Auditor(settings)
    try:
        auditor.catch_up()
        con = duckdb.connect(str(settings.sink_db), read_only=True)
        try:
            offsets = dict(
                con.execute('SELECT "partition", next_offset FROM sink_offsets').fetchall()
            )
        finally:
            con.close()
        return {e.event.event_id for e in auditor.events if e.offset >= offsets.get(e.partition, 0)}
    finally:
        auditor.close()


RESTARTS = 2


def _command_offsets(stack: Stack) -> tuple[dict, dict]:
    """The worker group's committed offsets and the end offsets of the commands topic."""
    settings = stack.settings
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        committed = admin.list_group_offsets(settings.app_id)[settings.app_id]
        tps = [
            TopicPartition(settings.commands_topic, p)
            for p in consumer.partitions_for_topic(settings.commands_topic)
        ]
        ends = consumer.end_offsets(tps)
        return {tp: committed[tp].offset if tp in committed else 0 for tp in tps}, ends
    finally:
        admin.close()
        consumer.close()


def _uncommitted(stack: Stack, target: dict) -> int:
    """Records below ``target`` (end offsets taken earlier) not yet committed. The worker's
    own movement ticks keep appending to the commands topic, so the live end is a moving
    goal; what was there when the load stopped is not."""
    committed, _ = _command_offsets(stack)
    return sum(max(0, end - committed[tp]) for tp, end in target.items())


# Before its fix the crawl showed in 4 of 8 runs of this case (the restart's timing decides).
def test_committed_offsets_catch_up_after_worker_restarts(stack: Stack, record_row) -> None:
    """After a worker restart under load, the group's committed offsets reach the end of
    the commands partitions (as of when the load pauses) within a few commit intervals.
    Up to ``RESTARTS`` restarts, a few seconds of load after each (not stretched in a soak:
    the check is about the first seconds after a restart); it stops at the first restart
    whose commits do not catch up."""
    driver = LoadDriver(stack.api.url, seed=9).start()
    lags: list[tuple[int, int, float | None]] = []  # at pause, after the wait, caught up in
    try:
        load_for(driver, phase_s(1.0))
        killed_at = time.monotonic()
        restarted_at = []
        for _ in range(RESTARTS):
            stack.worker.kill()
            stack.worker.start()
            restarted_at.append(time.monotonic())
            load_for(driver, 3.0)
            driver.pause()
            paused_at = time.monotonic()
            _, target = _command_offsets(stack)
            at_pause = _uncommitted(stack, target)
            try:
                wait_for(
                    lambda t=target: _uncommitted(stack, t) == 0,
                    timeout=5 * FAUST_COMMIT_INTERVAL_S,
                    interval=0.5,
                    message="committed offsets at the end of the partitions",
                )
                caught_up: float | None = time.monotonic() - paused_at
            except AssertionError:
                caught_up = None
            lags.append((at_pause, _uncommitted(stack, target), caught_up))
            driver.resume()
            if caught_up is None:
                break
        audit = settle_and_audit(stack, driver)
    finally:
        driver.stop()
    stuck = [lag for _, lag, caught_up in lags if caught_up is None]
    record_row(
        CaseRow(
            "worker restarts: committed offsets",
            audit.outcomes,
            recovery_s=recovery(driver, killed_at, restarted_at[0]),
            notes="uncommitted at pause -> after "
            f"{5 * FAUST_COMMIT_INTERVAL_S:.0f}s: " + ", ".join(f"{a} -> {b}" for a, b, _ in lags),
        )
    )
    assert_green(audit)
    # issue 10 item 2: after a restart one partition's commit crawls by about one offset
    # per commit interval (repeated offsets in Faust's acked list)
    fixed_bug(
        not stuck,
        f"{stuck[0] if stuck else 0} records still uncommitted "
        f"{5 * FAUST_COMMIT_INTERVAL_S:.0f}s after the load paused",
    )


def _worker_ready(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.worker.url}/dispatch/ready/", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_broker_sigkill_and_restart(stack: Stack, record_row) -> None:
    """SIGKILL the broker under load, keep it down for some seconds, restart it."""
    outage_s = 5.0 if not soak_seconds() else 30.0
    clients = LiveClients(stack.api.url, sse=4, ws=1).start()
    driver = LoadDriver(stack.api.url, seed=10).start()
    ready_samples: list[tuple[float, bool]] = []  # (seconds since the kill, ready)
    try:
        wait_for(clients.connected, timeout=30, message="the live clients' snapshots")
        load_for(driver, phase_s(1.0))
        stack.broker.kill()
        killed_at = time.monotonic()

        def outage_over() -> bool:
            ready_samples.append((time.monotonic() - killed_at, _worker_ready(stack)))
            return time.monotonic() - killed_at >= outage_s

        wait_for(outage_over, timeout=outage_s + 30, interval=0.5, message="the outage")
        restart_at = time.monotonic()
        broker_up_s = stack.broker.start()
        stack.worker.wait_ready()
        load_for(driver, phase_s(2.0))
        audit = settle_and_audit(stack, driver, clients)
    finally:
        driver.stop()
        clients.stop()
    unavailable = sum(1 for c in driver.sent for a in c.attempts if a.status in (0, 503))
    # The worker cannot know at once: it says not ready once the broker has been silent for
    # worker_broker_timeout_s (its probe asks every second), so samples after that count.
    knows_after = stack.settings.worker_broker_timeout_s + 1.5
    judged = [ready for at, ready in ready_samples if at >= knows_after]
    ready_during = sum(judged)
    record_row(
        CaseRow(
            f"broker SIGKILL {outage_s:.0f}s",
            audit.outcomes,
            audit.clients,
            recovery(driver, killed_at, restart_at),
            notes=f"503/conn errors {unavailable}, broker up in {broker_up_s:.1f}s, "
            f"worker ready {ready_during}/{len(judged)} samples in outage",
        )
    )
    assert_green(audit)
    # issue 10 item 5: the worker's ready page stays 200 while the broker is gone
    assert judged, "no sample of the worker's readiness late enough in the outage"
    fixed_bug(ready_during == 0, "the worker said ready while the broker was down")
