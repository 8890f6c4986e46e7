"""Regression (found in a 30-minute ``make run``): the worker logged ``[ERROR] Stream has not
started processing TP(dispatch.commands, 3)`` while it was processing, because the quiet
monitor skipped the one stamp Faust's stall check reads."""

from __future__ import annotations

from faust.types import TP

from streams.app import QuietMonitor


def test_quiet_monitor_stamps_what_the_stall_check_reads() -> None:
    monitor = QuietMonitor()
    tp = TP("dispatch.commands", 3)
    monitor.on_stream_event_in(tp, 0, stream=None, event=None)
    assert tp in monitor.stream_inbound_time
