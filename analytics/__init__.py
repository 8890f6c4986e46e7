"""Analysts and replay: the DuckDB sink, snapshots, ready queries, maps, log replay.

    dispatch.events --> sink.py (own consumer group) --> tables.py (one DuckDB transaction:
         |               rows + current state + Kafka offsets)    --> snapshot.py (.duckdb copy)
         |                                                               |
         |                                                   queries.py + queries/*.sql, maps.py
         +--> logio.py (time/offset window) --> replay.py (speed xN) --> another topic
                                            |                    +--> api/replay.py SSE
                                            +--> jsonl.py --> JSONL file --> a topic

Imports ``schemas``, ``dispatchwire`` and ``infra``; it imports neither ``api`` nor
``views``; the CLI and the API's routes (``api/replay.py``) use it.
"""
