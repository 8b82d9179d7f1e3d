"""The tariff table and the bill arithmetic computed from it.

Residential (居民) prices are 阶梯电价 on the annual cumulative consumption of the calendar
year (January resets). A residential customer who opted into 峰谷 pays the peak/valley price for
each period's energy plus, for the energy that falls into tier 2 or 3, the tier's surcharge over
tier 1 (tier price − tier-1 price); the bill lists that surcharge as the tier's ``price`` (0 for
tier 1), so for every line ``amount = kwh × price`` (rounded half-up to the fen) and the bill's
``amount`` is the sum of its lines. Commercial and enterprise customers pay a flat price or peak/valley prices.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Optional

FEN = Decimal("0.01")


@dataclass(frozen=True)
class Tier:
    tier: int
    upto_kwh: Optional[int]  # annual cumulative upper bound (inclusive); None = unbounded
    price: Decimal


@dataclass(frozen=True)
class Period:
    period: str  # peak | valley
    hours: str
    price: Decimal


@dataclass(frozen=True)
class Tariff:
    tariff_code: str
    name: str
    customer_type: str
    tiers: tuple[Tier, ...]
    time_of_use: tuple[Period, ...]

    @property
    def tiered(self) -> bool:
        return len(self.tiers) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "tariff_code": self.tariff_code,
            "name": self.name,
            "customer_type": self.customer_type,
            "tiers": [{"tier": t.tier, "upto_kwh": t.upto_kwh, "price": float(t.price)}
                      for t in self.tiers],
            "time_of_use": {p.period: {"hours": p.hours, "price": float(p.price)}
                            for p in self.time_of_use},
        }


_RES_TIERS = (Tier(1, 2760, Decimal("0.5283")), Tier(2, 4800, Decimal("0.5783")),
              Tier(3, None, Decimal("0.8283")))
_PEAK_HOURS, _VALLEY_HOURS = "08:00-21:00", "21:00-次日08:00"

TARIFFS: dict[str, Tariff] = {t.tariff_code: t for t in (
    Tariff("RES_TIERED", "居民生活用电（阶梯电价）", "residential", _RES_TIERS, ()),
    Tariff("RES_TIERED_TOU", "居民生活用电（阶梯电价+峰谷分时）", "residential", _RES_TIERS,
           (Period("peak", _PEAK_HOURS, Decimal("0.5583")),
            Period("valley", _VALLEY_HOURS, Decimal("0.3583")))),
    Tariff("COM_FLAT", "一般工商业用电（单一电价）", "commercial",
           (Tier(1, None, Decimal("0.6618")),), ()),
    Tariff("COM_TOU", "一般工商业用电（峰谷分时）", "commercial", (),
           (Period("peak", "08:00-22:00", Decimal("0.9852")),
            Period("valley", "22:00-次日08:00", Decimal("0.3384")))),
    Tariff("ENT_TOU", "大工业用电（峰谷分时，10千伏）", "enterprise", (),
           (Period("peak", "08:00-22:00", Decimal("0.9136")),
            Period("valley", "22:00-次日08:00", Decimal("0.3192")))),
)}


def charge(kwh: int, price: Decimal) -> Decimal:
    """``kwh × price`` rounded half-up to the fen."""
    return (Decimal(kwh) * price).quantize(FEN, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Charges:
    """A month's charges: ``amount`` is exactly the sum of the line amounts."""

    amount: Decimal
    tier_reached: int
    tiers: tuple[dict[str, Any], ...]
    time_of_use: tuple[dict[str, Any], ...]


def split_by_tier(tariff: Tariff, year_kwh_before: int, kwh: int) -> list[tuple[Tier, int]]:
    """The month's ``kwh`` split over the tiers, given the year's consumption before the month."""
    parts: list[tuple[Tier, int]] = []
    position, remaining = year_kwh_before, kwh
    for tier in tariff.tiers:
        if remaining <= 0:
            break
        room = remaining if tier.upto_kwh is None else max(0, tier.upto_kwh - position)
        used = min(room, remaining)
        if used > 0:
            parts.append((tier, used))
            position += used
            remaining -= used
    return parts


def compute_charges(tariff: Tariff, kwh_total: int, kwh_peak: Optional[int],
                    kwh_valley: Optional[int], year_kwh_before: int) -> Charges:
    """The charges of one month under ``tariff`` (see the module doc for the rules)."""
    tou_lines: list[dict[str, Any]] = []
    if tariff.time_of_use:
        if kwh_peak is None or kwh_valley is None or kwh_peak + kwh_valley != kwh_total:
            raise ValueError("a time-of-use bill needs peak + valley = total")
        for period in tariff.time_of_use:
            kwh = kwh_peak if period.period == "peak" else kwh_valley
            tou_lines.append({"period": period.period, "kwh": kwh, "price": period.price,
                              "amount": charge(kwh, period.price)})
    tier_lines: list[dict[str, Any]] = []
    tier_reached = 1
    if tariff.tiers:
        base = tariff.tiers[0].price
        parts = dict((t.tier, kwh) for t, kwh in split_by_tier(tariff, year_kwh_before, kwh_total)) \
            if tariff.tiered else {1: kwh_total}
        tier_reached = max(parts, default=next(
            (t.tier for t in tariff.tiers if t.upto_kwh is None or year_kwh_before < t.upto_kwh), 1))
        # Every tier up to the one reached is listed (0 kWh if the month started above it), so
        # the tier-1 price is always there to compare with.
        for tier in tariff.tiers:
            if tier.tier > tier_reached:
                break
            kwh = parts.get(tier.tier, 0)
            price = tier.price - base if tariff.time_of_use else tier.price
            tier_lines.append({"tier": tier.tier, "kwh": kwh, "price": price,
                               "amount": charge(kwh, price)})
    amount = sum((line["amount"] for line in tier_lines + tou_lines), Decimal("0.00"))
    return Charges(amount, tier_reached, tuple(tier_lines), tuple(tou_lines))
