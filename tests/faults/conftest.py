"""Fixtures of the fault suite: one broker of its own (the cases kill it), one stack
(worker, API, sink as ``dispatchwire`` processes) shared by the cases in file order, and
the per-case row printed as the case ends and again as a table at the session's end.

``DISPATCHWIRE_SOAK_SECONDS`` (``make soak``) stretches every load phase; unset, the
short version runs (part of ``make test``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatchwire.settings import Settings
from infra.topics import ensure_topics
from tests.conftest import sigterm_unwinds
from tests.faults.report import ROWS, CaseRow, table
from tests.faults.stack import ClusterStack, FaultBroker, FaultCluster, Stack

MAX_SOAK_SECONDS = 300.0


def soak_seconds() -> float:
    """Seconds of load per phase asked for by ``DISPATCHWIRE_SOAK_SECONDS`` (bounded)."""
    try:
        value = float(os.environ.get("DISPATCHWIRE_SOAK_SECONDS", "0") or 0)
    except ValueError:
        raise pytest.UsageError("DISPATCHWIRE_SOAK_SECONDS must be a number of seconds") from None
    return min(max(value, 0.0), MAX_SOAK_SECONDS)


@pytest.fixture(scope="session")
def fault_broker() -> Iterator[FaultBroker]:
    data_dir = Path(tempfile.mkdtemp(prefix="dispatchwire-faults-kafka-"))
    broker = FaultBroker(data_dir)
    with sigterm_unwinds():
        try:
            broker.start()
            yield broker
        finally:
            broker.stop()
            shutil.rmtree(data_dir, ignore_errors=True)


def fault_settings(name: str, bootstrap: str, tmp: Path, **topology: Any) -> Settings:
    """The settings every fault stack shares (fresh topics and app id, quick timeouts, no
    rate or per-address limits), with ``topology`` (partitions, brokers, workers) on top."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"{name[0]}{tag}.",
        app_id=f"dw-{name}-{tag}",
        data_dir=tmp / "data",
        sink_db=tmp / "data" / "sink.duckdb",
        tick_seconds=1.0,
        command_timeout_s=1.5,
        heartbeat_s=1.0,
        retry_ms=200,
        report_rate_per_minute=1_000_000,
        # every live client of the suite connects from 127.0.0.1 (200 SSE in a soak)
        api_max_live_per_address=0,
        **topology,
    )  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def fault_stack(
    fault_broker: FaultBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    settings = fault_settings(
        "faults",
        fault_broker.bootstrap,
        tmp,
        partitions=2,
        sink_batch_size=2_000,
        # the worker says not ready after this long without the broker (the broker case)
        worker_broker_timeout_s=2.0,
    )
    ensure_topics(settings)
    stack = Stack(fault_broker, settings, tmp)
    try:
        stack.seed()
        stack.ensure_up()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def stack(fault_stack: Stack) -> Stack:
    """The shared stack, repaired if an earlier case left a part down."""
    fault_stack.ensure_up()
    return fault_stack


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    """Issue 14: three KRaft nodes of its own (replication factor 3, min.insync 2, acks=all),
    two workers in one group, two API replicas; for tests/faults/test_cluster_faults.py."""
    tmp = tmp_path_factory.mktemp("cluster-faults")
    cluster = FaultCluster(tmp / "kafka")
    with sigterm_unwinds():
        stack = None
        try:
            cluster.start()
            settings = fault_settings(
                "cluster",
                cluster.bootstrap,
                tmp,
                kafka_brokers=3,
                replication_factor=3,
                min_insync_replicas=2,
                partitions=4,
                workers=2,
            )
            ensure_topics(settings)
            stack = ClusterStack(cluster, settings, tmp)
            stack.seed()
            stack.ensure_up()
            yield stack
        finally:
            if stack is not None:
                stack.close()
            cluster.stop()
            shutil.rmtree(tmp / "kafka", ignore_errors=True)


@pytest.fixture
def cluster(cluster_stack: ClusterStack) -> ClusterStack:
    """The shared cluster stack, repaired if an earlier case left a part down."""
    cluster_stack.ensure_up()
    return cluster_stack


@pytest.fixture
def record_row(request: pytest.FixtureRequest):
    """``record_row(row)``: keep the case's row for the summary and print it now."""

    def record(row: CaseRow) -> None:
        ROWS.append(row)
        plugins = request.config.pluginmanager
        reporter = plugins.get_plugin("terminalreporter")
        capture = plugins.get_plugin("capturemanager")
        if reporter is not None:
            with (
                capture.global_and_fixture_disabled()
                if capture is not None
                else contextlib.nullcontext()
            ):
                reporter.write_line("")
                reporter.write_line(table([row]))

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if ROWS:
        seconds = soak_seconds()
        title = f"fault suite (soak {seconds:.0f} s per phase)" if seconds else "fault suite"
        terminalreporter.section(title)
        terminalreporter.write_line(table(ROWS))
