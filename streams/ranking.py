"""Which unit a dispatch recommends, city-wide (issue 15): pure functions, no Kafka.

Every fitting unit that can be dispatched, in any region of the city
(``DispatchPolicy.mutual_aid_regions``), is ranked by its road ETA to the emergency. A unit
of the emergency's own region may be given a head start (``DispatchPolicy.home_preference_s``,
seconds of ETA); it is said in the explanation.

Coverage. When the winner is the last AVAILABLE unit of its type in its home region,
sending it leaves that region without one. If another candidate within
``coverage_margin_s`` of the winner's ETA keeps coverage, it is recommended instead and
the explanation says why; otherwise the winner stays and the explanation warns. A
dispatcher's override (``unit_id``) is never second-guessed, only explained.

Routing is lazy (issue 16: a city's fleet has ~300 fitting units to rank, and routing each
held the region's other commands back): ``Ranking`` routes the units in the order of the
least time each could take (``RouteSearch.min_duration_s``, a straight line at the top road
speed) and only as far as the order is read; a dispatch reads the first few, more only when
coverage asks for a later one. The order is the same as routing every unit and sorting.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from schemas.entities import Emergency, Unit, UnitStatus, UnitType
from streams.routing import Route, RouteSearch


@dataclass(frozen=True)
class DispatchPolicy:
    # The regions that lend each other units (the city: ``Settings.regions``). An emergency
    # of a region outside it is served by its own region's units only.
    mutual_aid_regions: tuple[str, ...] = ()
    # seconds of ETA a unit of the emergency's own region is ranked ahead by (0: none)
    home_preference_s: float = 0.0
    # how much later a unit may arrive to be preferred for keeping a region covered
    coverage_margin_s: float = 60.0

    def __post_init__(self) -> None:
        # a unit's time is then never below its score, which the lazy ranking relies on
        if self.home_preference_s < 0:
            raise ValueError("home_preference_s must not be negative")

    def head_start(self, cross_region: bool) -> float:
        """Seconds a unit is ranked ahead by: the home preference for the emergency's own
        region's units, none for another region's."""
        return 0.0 if cross_region else self.home_preference_s

    def area(self, region: str) -> Callable[[str], bool]:
        """Whether a unit's region may serve an emergency of ``region``."""
        if region in self.mutual_aid_regions:
            return lambda r: r in self.mutual_aid_regions
        return lambda r: r == region


@dataclass(frozen=True)
class Ranked:
    unit: Unit
    route: Route
    cross_region: bool

    def score(self, policy: DispatchPolicy) -> float:
        """What ranks: the ETA, less the home-region head start."""
        return self.route.duration_s - policy.head_start(self.cross_region)


@dataclass(frozen=True)
class Choice:
    chosen: Ranked
    explanation: str
    leaves_uncovered: str | None  # the region the chosen unit leaves without its type


class Ranking:
    """The units with a route, best first (by score, ties by unit id, so the order is
    stable), each routed only when the order reaches it. Before the next is taken, units
    are routed (least possible score first) while the least score one could have is no
    more than the best score routed and not taken yet; so when that best is taken, every
    unit not routed would score more, and the order is that of all the units routed and
    sorted."""

    def __init__(
        self,
        emergency: Emergency,
        units: Sequence[Unit],
        search: RouteSearch,
        policy: DispatchPolicy,
    ) -> None:
        self._search = search
        self._policy = policy
        self._region = emergency.region
        bounded = []
        for unit in units:
            head_start = policy.head_start(unit.region != emergency.region)
            least = search.min_duration_s((unit.lat, unit.lon)) - head_start
            bounded.append((least, unit.id, unit))
        bounded.sort(key=lambda b: (b[0], b[1]))
        self._unrouted = deque(bounded)
        self._routed: list[tuple[float, str, Ranked]] = []  # a heap
        self._taken: list[Ranked] = []

    def _take(self) -> Ranked | None:
        routed, unrouted = self._routed, self._unrouted
        while unrouted and (not routed or unrouted[0][0] <= routed[0][0]):
            _, unit_id, unit = unrouted.popleft()
            route = self._search.route((unit.lat, unit.lon))
            if route is not None:
                ranked = Ranked(unit=unit, route=route, cross_region=unit.region != self._region)
                heapq.heappush(routed, (ranked.score(self._policy), unit_id, ranked))
        if not routed:
            return None
        taken = heapq.heappop(routed)[2]
        self._taken.append(taken)
        return taken

    def __iter__(self) -> Iterator[Ranked]:
        i = 0
        while i < len(self._taken) or self._take() is not None:
            yield self._taken[i]
            i += 1

    def first(self, n: int) -> list[Ranked]:
        while len(self._taken) < n and self._take() is not None:
            pass
        return self._taken[:n]

    def __bool__(self) -> bool:
        return bool(self.first(1))


def type_name(unit_type: UnitType) -> str:
    return unit_type.value.replace("_", " ")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def uncovered_region(unit: Unit, fleet: Iterable[Unit]) -> str | None:
    """``unit``'s region if it is AVAILABLE and no other AVAILABLE unit of its type is
    left there."""
    if unit.status != UnitStatus.AVAILABLE:
        return None
    others = (
        u
        for u in fleet
        if u.id != unit.id
        and u.region == unit.region
        and u.type == unit.type
        and u.status == UnitStatus.AVAILABLE
    )
    return None if any(True for _ in others) else unit.region


def eta_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _describe(c: Ranked) -> str:
    where = f", from {c.unit.region}" if c.cross_region else ""
    return (
        f"{c.unit.callsign} (ETA {eta_text(c.route.duration_s)}, "
        f"{c.route.distance_m / 1000:.1f} km{where})"
    )


def _leaves(region: str, unit: Unit) -> str:
    kind = type_name(unit.type)
    return f"leaves {region} without {_article(kind)} {kind}"


def choose(
    emergency: Emergency,
    ranked: Ranking,
    fleet: Sequence[Unit],
    policy: DispatchPolicy,
    override: str | None = None,
) -> Choice:
    """The recommended (or, with ``override``, the dispatcher's) unit and why."""
    best, *then = ranked.first(2)
    parts: list[str] = []
    if override is not None:
        chosen = next(c for c in ranked if c.unit.id == override)
        if chosen is best:
            parts.append(f"dispatcher's choice {_describe(chosen)}, also the closest by road")
        else:
            parts.append(
                f"dispatcher's override {_describe(chosen)}; recommended was {_describe(best)}"
            )
        gap = uncovered_region(chosen.unit, fleet)
        if gap is not None:
            parts.append(_leaves(gap, chosen.unit))
        return Choice(chosen, "; ".join(parts), gap)
    chosen = best
    parts.append(f"closest by road: {_describe(best)}")
    if then:
        parts.append(f"next {_describe(then[0])}")
    if policy.home_preference_s > 0:
        parts.append(
            f"units of {emergency.region} ranked {policy.home_preference_s:g} s ahead "
            "(home-region preference)"
        )
    gap = uncovered_region(best.unit, fleet)
    if gap is not None:
        keeper = _keeper(best, ranked, fleet, policy)
        if keeper is not None:
            later = keeper.route.duration_s - best.route.duration_s
            chosen = keeper
            parts = [
                f"{_describe(keeper)} instead of the closest {_describe(best)}: "
                f"sending {best.unit.callsign} {_leaves(gap, best.unit)}; "
                f"{keeper.unit.callsign} keeps coverage and arrives {eta_text(later)} later "
                f"(margin {policy.coverage_margin_s:g} s)"
            ]
            gap = None
        else:
            parts.append(
                f"{_leaves(gap, best.unit)} (no unit within "
                f"{policy.coverage_margin_s:g} s keeps coverage)"
            )
    if chosen.cross_region:
        parts.append(f"mutual aid: reserved on {chosen.unit.region} before it is assigned")
    return Choice(chosen, "; ".join(parts), gap)


def _keeper(
    best: Ranked, ranked: Ranking, fleet: Sequence[Unit], policy: DispatchPolicy
) -> Ranked | None:
    """The first candidate after ``best`` within the coverage margin of its time that
    leaves no region uncovered. A candidate's time is at least its score (head starts are
    not negative), so the search stops at the first whose score is beyond the margin:
    every later one is too."""
    margin = policy.coverage_margin_s
    for c in ranked:
        if c is best:
            continue
        if c.score(policy) - best.route.duration_s > margin + 1e-6:
            return None
        if (
            c.route.duration_s - best.route.duration_s <= margin
            and uncovered_region(c.unit, fleet) is None
        ):
            return c
    return None
