"""The Faust worker: commands in, events out, current state in changelog-backed tables.

``create_faust_app(settings)`` builds the app (``streams.app``), which hands each batch of
commands to ``streams.processing`` (record check, decide, dead letters, sends, acks); the
rules live in
``streams.decisions`` as pure functions; ``streams.routing`` routes over the OpenStreetMap
road graph that ``streams.roadgraph`` builds.
"""
