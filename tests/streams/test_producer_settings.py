"""Issue 14, item 2: every producer writes with ``acks=all`` and idempotence. faust-streaming
turns idempotence on only inside exactly-once transactions, so the worker's producer (events
and changelog) had it off while the API's, replay's, seed's and the simulator's had it on."""

from __future__ import annotations

from streams.app import create_faust_app


def test_the_worker_producer_is_idempotent(make_settings) -> None:
    app = create_faust_app(make_settings(worker_web_port=0))
    options = app.producer._settings_extra()
    assert options.get("enable_idempotence") is True
    assert options.get("acks") == "all"
