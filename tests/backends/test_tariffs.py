"""The tariff arithmetic: tier boundaries, rounding, 峰谷 surcharges."""
from __future__ import annotations

from decimal import Decimal

import pytest

from backends.tariffs import TARIFFS, charge, compute_charges

RES, RES_TOU = TARIFFS["RES_TIERED"], TARIFFS["RES_TIERED_TOU"]


def tiers(charges):
    return [(t["tier"], t["kwh"], t["price"], t["amount"]) for t in charges.tiers]


def test_tier_one_ends_at_2760_inclusive():
    c = compute_charges(RES, 100, None, None, 2660)
    assert tiers(c) == [(1, 100, Decimal("0.5283"), Decimal("52.83"))] and c.tier_reached == 1
    c = compute_charges(RES, 101, None, None, 2660)
    assert tiers(c) == [(1, 100, Decimal("0.5283"), Decimal("52.83")),
                        (2, 1, Decimal("0.5783"), Decimal("0.58"))]
    assert c.amount == Decimal("53.41") and c.tier_reached == 2


def test_a_month_spanning_all_three_tiers():
    c = compute_charges(RES, 2200, None, None, 2700)
    assert [(t, k) for t, k, _, _ in tiers(c)] == [(1, 60), (2, 2040), (3, 100)]
    assert c.amount == charge(60, Decimal("0.5283")) + charge(2040, Decimal("0.5783")) + charge(
        100, Decimal("0.8283"))


def test_months_above_tier_one_still_list_tier_one_with_zero_kwh():
    c = compute_charges(RES, 300, None, None, 5000)
    assert [(t, k) for t, k, _, _ in tiers(c)] == [(1, 0), (2, 0), (3, 300)]
    assert c.tier_reached == 3 and c.amount == Decimal("248.49")


def test_rounding_is_half_up_to_the_fen():
    assert charge(5, Decimal("0.5283")) == Decimal("2.64")  # 2.6415
    assert charge(50, Decimal("0.0001")) == Decimal("0.01")  # 0.005 rounds up


def test_tou_residential_pays_period_prices_plus_tier_surcharges():
    c = compute_charges(RES_TOU, 300, 180, 120, 2700)
    assert tiers(c) == [(1, 60, Decimal("0"), Decimal("0.00")),
                        (2, 240, Decimal("0.0500"), Decimal("12.00"))]
    assert [(p["period"], p["kwh"], p["price"], p["amount"]) for p in c.time_of_use] == [
        ("peak", 180, Decimal("0.5583"), Decimal("100.49")),
        ("valley", 120, Decimal("0.3583"), Decimal("43.00"))]
    assert c.amount == Decimal("155.49")


def test_commercial_time_of_use_has_no_tiers():
    c = compute_charges(TARIFFS["COM_TOU"], 1000, 700, 300, 0)
    assert c.tiers == () and c.tier_reached == 1
    assert c.amount == charge(700, Decimal("0.9852")) + charge(300, Decimal("0.3384"))


def test_time_of_use_needs_consistent_periods():
    with pytest.raises(ValueError):
        compute_charges(RES_TOU, 300, 200, 50, 0)
