"""Routes and travel times over the road network.

``Router`` is the seam: dispatch only needs "how long from each of these points to that
point, and by which way", so an OSRM ``table``/``route`` client could stand in for
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


class Router(Protocol):
    def routes_to(
        self, destination: tuple[float, float], origins: Sequence[tuple[float, float]]
    ) -> list[Route | None]:
        """One route from each origin to ``destination`` (``None`` where there is none)."""
        ...


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


class GraphRouter:
    """Fastest paths on a ``RoadNetwork`` (one reverse Dijkstra per destination)."""

    def __init__(self, network: RoadNetwork) -> None:
        self.network = network
        self._routable = sorted(network.routable)
        self._grid = NodeGrid(network, self._routable)
        self._nearest: dict[tuple[float, float], int] = {}
        # reverse adjacency: node -> [(previous node, edge index, forward?)]
        self._into: dict[int, list[tuple[int, int, bool]]] = {}
        for i, e in enumerate(network.edges):
            if e.u in network.routable and e.v in network.routable:
                self._into.setdefault(e.v, []).append((e.u, i, True))
                if not e.oneway:
                    self._into.setdefault(e.u, []).append((e.v, i, False))

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

    def _towards(self, target: int) -> dict[int, tuple[float, float, int, bool]]:
        """For every node that reaches ``target``: (seconds, metres, next edge, forward)."""
        best: dict[int, tuple[float, float, int, bool]] = {target: (0.0, 0.0, -1, True)}
        heap = [(0.0, 0.0, target)]
        done: set[int] = set()
        edges = self.network.edges
        while heap:
            secs, metres, node = heapq.heappop(heap)
            if node in done:
                continue
            done.add(node)
            for prev, idx, forward in self._into.get(node, ()):
                e = edges[idx]
                cand = secs + e.travel_s
                if prev not in best or cand < best[prev][0]:
                    best[prev] = (cand, metres + e.length_m, idx, forward)
                    heapq.heappush(heap, (cand, metres + e.length_m, prev))
        return best

    def routes_to(
        self, destination: tuple[float, float], origins: Sequence[tuple[float, float]]
    ) -> list[Route | None]:
        if not origins:
            return []
        target = self.nearest_node(*destination)
        tree = self._towards(target)
        return [self._route(origin, target, destination, tree) for origin in origins]

    def route(self, origin: tuple[float, float], destination: tuple[float, float]) -> Route | None:
        return self.routes_to(destination, [origin])[0]

    def _route(
        self,
        origin: tuple[float, float],
        target: int,
        destination: tuple[float, float],
        tree: dict[int, tuple[float, float, int, bool]],
    ) -> Route | None:
        nodes = self.network.nodes
        start = self.nearest_node(*origin)
        if start not in tree:
            return None
        secs, metres = tree[start][0], tree[start][1]
        lead = haversine_m(*origin, *nodes[start]) + haversine_m(*nodes[target], *destination)
        return Route(
            distance_m=round(metres + lead, 1),
            duration_s=round(secs + lead / OFF_ROAD_SPEED_MS, 1),
            walk=lambda: self._walk(origin, start, target, destination, tree),
        )

    def _walk(
        self,
        origin: tuple[float, float],
        start: int,
        target: int,
        destination: tuple[float, float],
        tree: dict[int, tuple[float, float, int, bool]],
    ) -> list[tuple[float, float]]:
        """The points of the path ``tree`` leads along from ``start`` to ``target``."""
        nodes, edges = self.network.nodes, self.network.edges
        points = [origin, nodes[start]]
        node = start
        while node != target:
            _, _, idx, forward = tree[node]
            e = edges[idx]
            shape = list(e.shape) if forward else list(reversed(e.shape))
            node = e.v if forward else e.u
            points.extend(shape)
            points.append(nodes[node])
        points.append(destination)
        return [(round(a, 7), round(b, 7)) for a, b in _dedupe(points)]


def _dedupe(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for p in points:
        if not out or haversine_m(*out[-1], *p) > 0.5:
            out.append(p)
    if len(out) == 1:
        out.append(out[0])
    return out
