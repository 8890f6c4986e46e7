"""Routes and travel times over the road network.

``Router`` is the seam: dispatch only needs "how long from each of these points to that
point, and by which way", and for ranking a city's units a time none of them can beat
(``RouteSearch.min_duration_s``), so an OSRM ``table``/``route`` client could stand in for
``GraphRouter`` (Dijkstra over the committed OSM graph) without touching the decisions.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from schemas.geo import RoadNetwork, haversine_m

# Off-road legs (from a point to its nearest road node) are driven slowly.
OFF_ROAD_SPEED_MS = 5.0
# Points whose nearest road node GraphRouter remembers (then it forgets them all at once):
# a few times a city's fleet, about 1 MB.
NEAREST_MEMO = 8192


@dataclass(frozen=True, eq=False)
class Route:
    distance_m: float
    duration_s: float
    walk: Callable[[], list[tuple[float, float]]] = field(repr=False)

    @cached_property
    def points(self) -> list[tuple[float, float]]:
        """[lat, lon], origin first. Walked on first use: a city-wide dispatch ranks every
        candidate by its time and distance and keeps the route of one."""
        return self.walk()


def nearest_of(network: RoadNetwork, candidates: Iterable[int], lat: float, lon: float) -> int:
    """The node of ``candidates`` nearest to ``lat``/``lon`` (flat-earth distance, which
    orders nodes of one city the same way the great circle does)."""
    kx = math.cos(math.radians(lat))
    nodes = network.nodes
    return min(candidates, key=lambda i: (nodes[i][0] - lat) ** 2 + ((nodes[i][1] - lon) * kx) ** 2)


class NodeGrid:
    """``nearest_of`` over fixed nodes, by a grid of cells (issue 16): a dispatch finds the
    nearest road node of every candidate unit, and scanning all nodes for each cost ~0.2 ms,
    about 50 ms of CPU for a region's 250 units, while the region's other commands waited.
    The same node as ``nearest_of``, ties included: the rings of cells around the point are
    searched until no node beyond them can be as near as the best found; a point farther
    than ``MAX_RINGS`` cells from every node is scanned as before."""

    CELL_DEG = 0.0005  # ~55 m of latitude; a cell's longitude span is the same in degrees
    MAX_RINGS = 16

    def __init__(self, network: RoadNetwork, nodes: Iterable[int]) -> None:
        self.network = network
        self.nodes = sorted(nodes)
        self.cells: dict[tuple[int, int], list[int]] = {}
        for i in self.nodes:
            self.cells.setdefault(self._cell(*network.nodes[i]), []).append(i)

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        return math.floor(lat / self.CELL_DEG), math.floor(lon / self.CELL_DEG)

    def nearest(self, lat: float, lon: float) -> int:
        row, col = self._cell(lat, lon)
        kx = math.cos(math.radians(lat))
        # a node beyond ring r is more than r cells away along one axis (longitude distances
        # are scaled by kx in the flat-earth distance, as in nearest_of)
        step = self.CELL_DEG * min(1.0, kx)
        found: list[int] = []
        for ring in range(self.MAX_RINGS + 1):
            for r in range(row - ring, row + ring + 1):
                edge = r in (row - ring, row + ring)
                for c in range(col - ring, col + ring + 1) if edge else (col - ring, col + ring):
                    found.extend(self.cells.get((r, c), ()))
            if found:
                best = nearest_of(self.network, sorted(found), lat, lon)
                y, x = self.network.nodes[best]
                if math.hypot(y - lat, (x - lon) * kx) < ring * step * (1 - 1e-9):
                    return best
        return nearest_of(self.network, self.nodes, lat, lon)


class RouteSearch(Protocol):
    """Routes from any origin to one destination (``Router.search``)."""

    def route(self, origin: tuple[float, float]) -> Route | None: ...

    def min_duration_s(self, origin: tuple[float, float]) -> float:
        """A time no route from ``origin`` can beat (its ``duration_s`` is never below it),
        without searching: what lets a dispatch route the nearest units first and stop."""
        ...


class Router(Protocol):
    def routes_to(
        self, destination: tuple[float, float], origins: Sequence[tuple[float, float]]
    ) -> list[Route | None]:
        """One route from each origin to ``destination`` (``None`` where there is none)."""
        ...

    def search(self, destination: tuple[float, float]) -> RouteSearch:
        """Routes to ``destination``, each found when asked for."""
        ...


class GraphRouter:
    """Fastest paths on a ``RoadNetwork`` (one reverse Dijkstra per destination)."""

    def __init__(self, network: RoadNetwork) -> None:
        self.network = network
        self._routable = sorted(network.routable)
        self._grid = NodeGrid(network, self._routable)
        self._nearest: dict[tuple[float, float], int] = {}
        # reverse adjacency: node -> [(previous node, edge index, forward?)]
        self._into: dict[int, list[tuple[int, int, bool]]] = {}
        # The fastest any edge is crossed, measured along the straight line between its
        # ends (so whatever its shape or rounded length), or the off-road legs' speed if
        # that is faster: no route covers the line from its origin to its destination
        # faster (``GraphSearch.min_duration_s``).
        self.top_speed_ms = OFF_ROAD_SPEED_MS
        for i, e in enumerate(network.edges):
            if e.u in network.routable and e.v in network.routable:
                self._into.setdefault(e.v, []).append((e.u, i, True))
                if not e.oneway:
                    self._into.setdefault(e.u, []).append((e.v, i, False))
                line = haversine_m(*network.nodes[e.u], *network.nodes[e.v])
                speed = line / e.travel_s if e.travel_s > 0 else math.inf if line > 0 else 0.0
                self.top_speed_ms = max(self.top_speed_ms, speed)

    def nearest_node(self, lat: float, lon: float) -> int:
        """The routable node nearest to the point, remembered per point: a city-wide
        dispatch asks for every candidate unit's node (~300 searches, ~4 ms), and between
        two dispatches most units are where they were (a unit's position changes with its
        GPS fix, once a second at most)."""
        point = (lat, lon)
        node = self._nearest.get(point)
        if node is None:
            if len(self._nearest) >= NEAREST_MEMO:
                self._nearest.clear()  # a fleet's worth of points; older ones are stale
            node = self._nearest[point] = self._grid.nearest(lat, lon)
        return node

    def search(self, destination: tuple[float, float]) -> GraphSearch:
        return GraphSearch(self, destination)

    def routes_to(
        self, destination: tuple[float, float], origins: Sequence[tuple[float, float]]
    ) -> list[Route | None]:
        if not origins:
            return []
        search = self.search(destination)
        return [search.route(origin) for origin in origins]

    def route(self, origin: tuple[float, float], destination: tuple[float, float]) -> Route | None:
        return self.routes_to(destination, [origin])[0]


class GraphSearch:
    """Routes to one destination by a reverse Dijkstra from its road node, run only as far
    as the origins asked for need (issue 16: a city-wide dispatch asks for its nearest units
    first and stops once no other can rank among the first few; a unit's route home asks
    for one origin). A node's entry is final once the node is settled (popped: road times
    are never negative, and a later entry must be strictly faster), and the search pops the
    same nodes in the same order however often it is resumed, so a route is the same as
    from one search run to the end."""

    def __init__(self, router: GraphRouter, destination: tuple[float, float]) -> None:
        self.router = router
        self.destination = destination
        self.target = router.nearest_node(*destination)
        # node -> (seconds, metres, next edge, forward) for every node reached so far
        self.tree: dict[int, tuple[float, float, int, bool]] = {self.target: (0.0, 0.0, -1, True)}
        self._heap = [(0.0, 0.0, self.target)]
        self._done: set[int] = set()

    def _settle(self, node: int) -> bool:
        """Search on until ``node`` is settled; False if no road from it leads here."""
        best, heap, done = self.tree, self._heap, self._done
        into, edges = self.router._into, self.router.network.edges
        while node not in done and heap:
            secs, metres, reached = heapq.heappop(heap)
            if reached in done:
                continue
            done.add(reached)
            for prev, idx, forward in into.get(reached, ()):
                e = edges[idx]
                cand = secs + e.travel_s
                if prev not in best or cand < best[prev][0]:
                    best[prev] = (cand, metres + e.length_m, idx, forward)
                    heapq.heappush(heap, (cand, metres + e.length_m, prev))
        return node in done

    def min_duration_s(self, origin: tuple[float, float]) -> float:
        # A route's time is its road part plus its two off-road legs; none of the three is
        # quicker than its straight line at the top speed, and the three lines together
        # are no shorter than the one from origin to destination. The route's time is
        # rounded to 0.1 s (so at most 0.05 less), less a hair for float error.
        line = haversine_m(*origin, *self.destination)
        return line / self.router.top_speed_ms * (1 - 1e-9) - 0.051

    def route(self, origin: tuple[float, float]) -> Route | None:
        router, destination = self.router, self.destination
        nodes = router.network.nodes
        start = router.nearest_node(*origin)
        if not self._settle(start):
            return None
        secs, metres = self.tree[start][0], self.tree[start][1]
        lead = haversine_m(*origin, *nodes[start]) + haversine_m(*nodes[self.target], *destination)
        return Route(
            distance_m=round(metres + lead, 1),
            duration_s=round(secs + lead / OFF_ROAD_SPEED_MS, 1),
            walk=lambda: self._walk(origin, start),
        )

    def _walk(self, origin: tuple[float, float], start: int) -> list[tuple[float, float]]:
        """The points of the path the search leads along from ``start`` to the target."""
        nodes, edges = self.router.network.nodes, self.router.network.edges
        points = [origin, nodes[start]]
        node = start
        while node != self.target:
            _, _, idx, forward = self.tree[node]
            e = edges[idx]
            shape = list(e.shape) if forward else list(reversed(e.shape))
            node = e.v if forward else e.u
            points.extend(shape)
            points.append(nodes[node])
        points.append(self.destination)
        return [(round(a, 7), round(b, 7)) for a, b in _dedupe(points)]


def _dedupe(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for p in points:
        if not out or haversine_m(*out[-1], *p) > 0.5:
            out.append(p)
    if len(out) == 1:
        out.append(out[0])
    return out
