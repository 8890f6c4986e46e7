"""The parts one app is made of, built together and kept on ``app.state.services``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from api.auth import Auth, RateLimiter
from api.broadcast import Hub
from api.bus import CommandBus
from api.conflate import hub_for
from api.limits import LiveConnections
from api.metrics import ApiMetrics
from api.readmodel import ReadModel
from dispatchwire.settings import Settings


@dataclass
class Services:
    settings: Settings
    metrics: ApiMetrics
    hub: Hub
    model: ReadModel
    bus: CommandBus
    auth: Auth
    report_limiter: RateLimiter
    live: LiveConnections  # caps on SSE + WebSocket connections

    @classmethod
    def build(cls, settings: Settings) -> Services:
        metrics = ApiMetrics()
        hub = hub_for(settings.api_position_frames_per_s, metrics.fanned_out.inc)
        return cls(
            settings=settings,
            metrics=metrics,
            hub=hub,
            model=ReadModel(settings, hub, metrics),
            bus=CommandBus(settings),
            auth=Auth(settings),
            report_limiter=RateLimiter(settings.report_rate_per_minute),
            live=LiveConnections.from_settings(
                settings,
                lambda transport, cap: metrics.connections_refused.labels(transport, cap).inc(),
            ),
        )


def services_of(request: HTTPConnection) -> Services:
    """The services of the app a request (or WebSocket) came to."""
    services: Services = request.app.state.services
    return services
