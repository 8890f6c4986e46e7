"""Issue 16, part 2: a dispatch finds the nearest road node of every candidate unit, and
each search scanned every routable node (1,283 of them: ~50 ms of CPU for a region's 250
units, while the region's GPS fixes and reports waited behind it). ``NodeGrid`` finds the
same node (ties included) from the cells around the point."""

from __future__ import annotations

import dataclasses
import random

from schemas.geo import load_network
from streams.routing import GraphRouter, nearest_of

NETWORK = load_network()


class CountingNodes(tuple):  # type: ignore[type-arg]
    """The network's node tuple, counting the nodes looked at."""

    looked = 0

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        CountingNodes.looked += 1
        return super().__getitem__(index)


def random_points(n: int, seed: int) -> list[tuple[float, float]]:
    south, west, north, east = NETWORK.bbox
    rng = random.Random(seed)
    return [
        (rng.uniform(south - 0.01, north + 0.01), rng.uniform(west - 0.02, east + 0.02))
        for _ in range(n)
    ]


def test_the_nearest_node_is_the_one_a_scan_of_every_node_finds():
    router = GraphRouter(NETWORK)
    routable = sorted(NETWORK.routable)
    points = random_points(2_000, seed=16)
    points += [NETWORK.nodes[i] for i in routable[:300]]  # on a node: distance 0
    points += [(-33.86, 151.21), (89.0, 0.0)]  # far from every node: the scan itself
    for lat, lon in points:
        assert router.nearest_node(lat, lon) == nearest_of(NETWORK, routable, lat, lon)


def test_finding_a_units_road_node_looks_at_a_few_nodes_not_all():
    counting = dataclasses.replace(NETWORK, nodes=CountingNodes(NETWORK.nodes))
    router = GraphRouter(counting)
    routable = sorted(NETWORK.routable)
    rng = random.Random(7)
    on_roads = [NETWORK.nodes[rng.choice(routable)] for _ in range(250)]  # units on roads
    CountingNodes.looked = 0
    for lat, lon in on_roads:
        router.nearest_node(lat + 1e-5, lon - 1e-5)
    per_search = CountingNodes.looked / len(on_roads)
    assert per_search < len(routable) / 10, (
        f"{per_search:.0f} of {len(routable)} nodes looked at per search"
    )


def test_a_point_asked_again_is_answered_from_memory_which_stays_bounded(monkeypatch):
    """Between two dispatches most units have not moved: their nodes are remembered."""
    from streams import routing

    counting = dataclasses.replace(NETWORK, nodes=CountingNodes(NETWORK.nodes))
    router = GraphRouter(counting)
    routable = sorted(NETWORK.routable)
    points = random_points(250, seed=3)
    first = [router.nearest_node(lat, lon) for lat, lon in points]
    CountingNodes.looked = 0
    again = [router.nearest_node(lat, lon) for lat, lon in points]
    assert again == first
    assert CountingNodes.looked == 0
    monkeypatch.setattr(routing, "NEAREST_MEMO", 50)
    for lat, lon in random_points(400, seed=4) + points:
        assert router.nearest_node(lat, lon) == nearest_of(NETWORK, routable, lat, lon)
        assert len(router._nearest) <= 50
