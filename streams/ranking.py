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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from schemas.entities import Emergency, Unit, UnitStatus, UnitType
from streams.routing import Route


@dataclass(frozen=True)
class DispatchPolicy:
    # The regions that lend each other units (the city: ``Settings.regions``). An emergency
    # of a region outside it is served by its own region's units only.
    mutual_aid_regions: tuple[str, ...] = ()
    # seconds of ETA a unit of the emergency's own region is ranked ahead by (0: none)
    home_preference_s: float = 0.0
    # how much later a unit may arrive to be preferred for keeping a region covered
    coverage_margin_s: float = 60.0

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
        return self.route.duration_s - (0.0 if self.cross_region else policy.home_preference_s)


@dataclass(frozen=True)
class Choice:
    chosen: Ranked
    ranked: list[Ranked]
    explanation: str
    leaves_uncovered: str | None  # the region the chosen unit leaves without its type


def rank(
    emergency: Emergency,
    units: Sequence[Unit],
    routes: Sequence[Route | None],
    policy: DispatchPolicy,
) -> list[Ranked]:
    """The units with a route, best first (ties by unit id, so the order is stable)."""
    ranked = [
        Ranked(unit=u, route=r, cross_region=u.region != emergency.region)
        for u, r in zip(units, routes, strict=True)
        if r is not None
    ]
    return sorted(ranked, key=lambda c: (c.score(policy), c.unit.id))


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
    ranked: list[Ranked],
    fleet: Sequence[Unit],
    policy: DispatchPolicy,
    override: str | None = None,
) -> Choice:
    """The recommended (or, with ``override``, the dispatcher's) unit and why."""
    best = ranked[0]
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
        return Choice(chosen, ranked, "; ".join(parts), gap)
    chosen = best
    parts.append(f"closest by road: {_describe(best)}")
    if len(ranked) > 1:
        parts.append(f"next {_describe(ranked[1])}")
    if policy.home_preference_s > 0:
        parts.append(
            f"units of {emergency.region} ranked {policy.home_preference_s:g} s ahead "
            "(home-region preference)"
        )
    gap = uncovered_region(best.unit, fleet)
    if gap is not None:
        keeper = next(
            (
                c
                for c in ranked[1:]
                if c.route.duration_s - best.route.duration_s <= policy.coverage_margin_s
                and uncovered_region(c.unit, fleet) is None
            ),
            None,
        )
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
    return Choice(chosen, ranked, "; ".join(parts), gap)
