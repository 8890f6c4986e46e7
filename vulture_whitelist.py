"""Names the dead-code finder (vulture, run by ``make lint``) cannot see used.

Each entry is used: by a library calling back into us, by the wire format, or by the
tests and benchmarks (vulture reads only the product packages). Remove an entry when its
name goes; add one only with the reason it is alive.
"""
# ruff: noqa: B018, F821  (vulture's whitelist form: bare names and ``_.attribute``)

# --- called back by a library ---
_.on_message_in  # streams/app.py QuietMonitor: Faust sensor hooks
_.on_stream_event_in
_.on_stream_event_out
_.on_message_out
_.on_table_get
_.on_table_set
_.on_key_set  # streams/processing.py ChangelogTable: Faust table hook
_.on_key_del  # streams/processing.py ChangelogTable: Faust table hook (tombstones, issue 16)
apply_commands  # streams/app.py: a Faust agent (@app.agent)
move_units  # streams/app.py: a Faust timer (@app.timer)
state_page  # streams/app.py: Faust web views (@app.page)
ready_page
records_page
batches_page
probe_broker  # streams/app.py: a Faust timer (@app.timer)
watch_progress  # streams/app.py: a Faust timer (@app.timer), the takeover guard
_._fetch_max_wait_ms  # streams/app.py: read by aiokafka's consumer.start()
_._request_timeout_ms  # streams/app.py: read by aiokafka's client (each connection) and sender
_._get_conn_lock  # infra/connections.py: read by aiokafka's client as it connects
_._new_offset  # streams/offsets.py: replaces Faust's Consumer._new_offset
_.perform_seek  # streams/offsets.py: replaces Faust's Consumer.perform_seek
_.data_received  # api/limits.py: an asyncio protocol callback (uvicorn)
_.levelname  # dispatchwire/logs.py: set on a record, read by the logging formatter
signum  # cli/run.py, analytics/cli.py: signal handler arguments
frame
serialized_value  # infra/topics.py: kafka-python's partitioner signature

# --- pydantic ---
model_config  # every model's and Settings' configuration
_._replication_from_cluster_size  # dispatchwire/settings.py: @model_validator
_._refuse_dev_tokens_outside_dev  # dispatchwire/settings.py: @model_validator
issued_at  # schemas/commands.py: command fields on the wire (DESIGN.md)
issued_by
phone  # schemas/entities.py: an emergency's field on the wire
chosen_unit_id  # schemas/events.py: event fields on the wire
overridden
dispatch
mutual_aid  # schemas/events.py (issue 15): a saga step's name on the wire
follow_fleet  # streams/app.py: a Faust task and a page, registered by decorators
fleet_page

# --- used by tests/ and tests/benchmarks/ only ---
produce  # analytics/logio.py
paced  # analytics/replay.py
bench_ingest  # analytics/tables.py
bench_executemany
_.overflows  # api/broadcast.py: counters the tests read
_.timeouts
free_port  # infra/kafka.py
scratch_broker  # infra/kafka.py: benches and broker-killing tests
_.contains  # schemas/geo.py
region_ids  # schemas/geo.py
frame_positions  # schemas/live.py: Python readers of a position frame (tests, fleet bench)
_.apply_all  # schemas/projection.py
_.rejected  # streams/decisions.py
_.offered_load  # streams/simulate.py
random_road_point  # streams/simulate.py: the load and crash tests draw points with it
outcome_to_json  # streams/state.py
LIVE_LAYER_IDS  # views/mapspec.py
