"""A route's points are walked only when asked for: a city-wide dispatch ranks every fitting
unit by its road time and keeps one route (walking 250 candidates' paths cost ~30 ms a
dispatch, with the partition's other commands waiting)."""

from __future__ import annotations

import itertools
import random

from schemas.geo import haversine_m, load_network
from streams.routing import GraphRouter
from streams.simulate import random_road_point

NETWORK = load_network()


def test_ranking_times_do_not_walk_the_paths_and_a_walked_path_is_the_route():
    router = GraphRouter(NETWORK)
    rng = random.Random(5)
    origins = [random_road_point(NETWORK, rng) for _ in range(40)]
    destination = random_road_point(NETWORK, rng)
    routes = router.routes_to(destination, origins)
    found = [r for r in routes if r is not None]
    assert len(found) > 30
    assert not any("points" in vars(r) for r in found)  # times only, nothing walked
    for origin, route in zip(origins, routes, strict=True):
        if route is None:
            continue
        points = route.points
        assert points[0] == (round(origin[0], 7), round(origin[1], 7))
        assert points[-1] == (round(destination[0], 7), round(destination[1], 7))
        along = sum(haversine_m(*p, *q) for p, q in itertools.pairwise(points))
        # the path walked is the one the distance was summed over (rounding and the
        # de-duplicated sub-metre steps aside)
        assert abs(along - route.distance_m) <= max(5.0, route.distance_m * 0.01), (
            along,
            route.distance_m,
        )
        assert route.points is points  # walked once
