"""Moving a dispatched unit one tick along its route.

The unit drives its route at the average speed its remaining ETA implies (remaining road
distance / remaining ETA), so a tick covers a real distance along the polyline (a few
metres to tens of metres at 1 s) instead of jumping from vertex to vertex, and the ETA
counts down by one tick per tick. Pure functions of the unit's state, so a replayed
``unit_position`` command computes the same step.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.entities import Unit
from schemas.geo import bearing_deg, haversine_m


@dataclass(frozen=True)
class Step:
    lat: float
    lon: float
    route_index: int  # the unit is on the segment route[route_index] -> route[route_index + 1]
    eta_s: float
    heading: float | None
    arrived: bool


def remaining_m(route: list[tuple[float, float]], index: int, lat: float, lon: float) -> float:
    if index >= len(route) - 1:
        return 0.0
    total = haversine_m(lat, lon, *route[index + 1])
    for a, b in zip(route[index + 1 :], route[index + 2 :], strict=False):
        total += haversine_m(*a, *b)
    return total


def advance(unit: Unit, tick_s: float) -> Step:
    """Where ``unit`` is one tick later."""
    route = [(p[0], p[1]) for p in (unit.route or [])]
    index = unit.route_index or 0
    lat, lon = unit.lat, unit.lon
    eta = unit.eta_s or 0.0
    left = remaining_m(route, index, lat, lon)
    if len(route) < 2 or eta <= tick_s or left <= 0.5:
        end_lat, end_lon = route[-1] if route else (lat, lon)
        heading = bearing_deg(lat, lon, end_lat, end_lon) if left > 0.5 else unit.heading
        return Step(end_lat, end_lon, max(0, len(route) - 1), 0.0, heading, arrived=True)
    travel = left / eta * tick_s
    while index < len(route) - 1:
        nxt = route[index + 1]
        to_next = haversine_m(lat, lon, *nxt)
        if travel < to_next:
            f = travel / to_next
            new_lat, new_lon = lat + (nxt[0] - lat) * f, lon + (nxt[1] - lon) * f
            heading = bearing_deg(lat, lon, *nxt)
            return Step(
                round(new_lat, 7),
                round(new_lon, 7),
                index,
                round(eta - tick_s, 1),
                round(heading, 1),
                arrived=False,
            )
        travel -= to_next
        lat, lon = nxt
        index += 1
    end = route[-1]
    return Step(end[0], end[1], len(route) - 1, 0.0, unit.heading, arrived=True)
