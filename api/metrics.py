"""Prometheus metrics of one app, in a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class ApiMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.clients = Gauge(
            "dispatchwire_api_clients", "Connected live clients", ["transport"], registry=r
        )
        self.fanned_out = Counter(
            "dispatchwire_api_messages_fanned_out",
            "Live messages handed to client queues (one per client per message)",
            registry=r,
        )
        self.events_consumed = Counter(
            "dispatchwire_api_events_consumed", "Events folded into the read model", registry=r
        )
        self.resyncs = Counter(
            "dispatchwire_api_client_resyncs",
            "Slow clients whose queue overflowed and were sent a fresh snapshot",
            registry=r,
        )
        self.report_to_delivery = Histogram(
            "dispatchwire_api_report_to_delivery_seconds",
            "From a report's issue time to its emergency_created reaching the client queues",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "dispatchwire_api_consumer_lag",
            "Records of dispatch.events not yet folded into the read model",
            registry=r,
        )
        self.commands = Counter(
            "dispatchwire_api_commands",
            "Commands by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.connections_refused = Counter(
            "dispatchwire_api_live_connections_refused",
            "Live connections refused at a cap (per_address: 429, total: 503)",
            ["transport", "cap"],
            registry=r,
        )
        for transport in ("sse", "ws"):
            self.clients.labels(transport)
            for cap in ("per_address", "total"):
                self.connections_refused.labels(transport, cap)

    def render(self) -> bytes:
        return generate_latest(self.registry)
