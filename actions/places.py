"""Where a customer is: areas named in text, service zones, and whether an outage reaches them.

Service zone (urban / rural / remote) decides the promised repair arrival time. The backends
carry no zone field, so :func:`service_zone` derives it from Chinese administrative names,
which encode it: a village (村, but not the urban estates called 新村), town (镇), township (乡)
or farm (农场) is rural; mountain, forest, pastoral and island areas (山区, 林区, 林场, 牧区, 海岛,
边远, 偏远) are remote; anything else is urban. When the zone cannot be decided from the place
the promise uses the urban figure, the strictest one, so a customer is never promised less.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from actions.text import normalize

_AREA_SUFFIXES = ("街道办事处", "街道", "社区", "新区", "区", "镇", "乡", "村", "路", "大道", "街")
_REMOTE = re.compile(r"山区|林区|林场|牧区|牧场|海岛|岛上|边远|偏远")
_RURAL = re.compile(r"(?<!新)村|镇|乡(?!村振兴)|农场|村民小组")

ZONE_LABELS = {"urban": "城区", "rural": "农村地区", "remote": "特殊边远地区"}


def service_zone(*places: Optional[str]) -> str:
    """``"urban"``, ``"rural"`` or ``"remote"`` from the names of a place (see module doc)."""
    text = " ".join(normalize(p) for p in places if p)
    if _REMOTE.search(text):
        return "remote"
    if _RURAL.search(text):
        return "rural"
    return "urban"


def _stem(name: str) -> str:
    for suffix in _AREA_SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class Place:
    """Where the customer is, as far as we know (any part may be unknown)."""

    district: Optional[str] = None
    street: Optional[str] = None
    community: Optional[str] = None
    address: Optional[str] = None
    # what the customer named when it is not a known area (a road, say): the backend matches it
    named: Optional[str] = None

    def names(self) -> list[str]:
        return [n for n in (self.district, self.street, self.community, self.address) if n]

    def most_specific(self) -> Optional[str]:
        return self.community or self.street or self.district

    def zone(self) -> str:
        return service_zone(*self.names())


def place_from_text(text: str, areas: Iterable[Any]) -> Place:
    """The known district/street/community named in ``text`` (names matched suffix-tolerantly).

    ``areas`` are the backend's areas (objects with district, street, community). A community
    wins over a street, a street over a district; the parents of the winner are filled in.
    """
    text = normalize(text)
    best: Optional[Place] = None
    best_rank = 0
    for area in areas:
        district, street, community = area.district, area.street, area.community
        hits = [bool(n) and _stem(n) in text for n in (district, street, community)]
        # a community or street name alone must not be a two-letter accident inside a word
        rank = 3 if hits[2] else 2 if hits[1] else 1 if hits[0] else 0
        if rank > best_rank:
            best_rank = rank
            best = Place(
                district=district,
                street=street if rank >= 2 else None,
                community=community if rank == 3 else None,
                address=text,
            )
    return best or Place(address=text or None)


def area_query(values: list[str]) -> Optional[str]:
    """The area to ask the backend for when the customer named several (the last is the most
    specific in Chinese order: 江宁区东山街道 → 东山街道)."""
    return values[-1] if values else None


def outage_covers(outage: Any, place: Place) -> bool:
    """Whether an outage reaches the place: no level both know may differ."""
    for level in ("district", "street", "community"):
        theirs, ours = getattr(outage, level, None), getattr(place, level)
        if theirs and ours and _stem(theirs) != _stem(ours):
            return False
    return True
