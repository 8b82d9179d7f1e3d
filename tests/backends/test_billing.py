"""Billing API through the real HttpBillingClient over loopback HTTP."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from backends import demo_accounts as demo
from integrations.billing import BillingNotFound, BillingRejected, Tariff
from integrations.errors import BackendRejected, NotFound

FEN = Decimal("0.01")


def _charge(kwh: Decimal, price: Decimal) -> Decimal:
    return (kwh * price).quantize(FEN, rounding=ROUND_HALF_UP)


def _expected_tier_kwh(tariff: Tariff, before: int, kwh: int) -> dict[int, int]:
    """Independent re-statement of 阶梯 splitting from the published table."""
    split, lower = {}, 0
    for tier in tariff.tiers:
        upper = tier.upto_kwh if tier.upto_kwh is not None else 10**12
        overlap = max(0, min(before + kwh, upper) - max(before, lower))
        if overlap:
            split[tier.tier] = overlap
        lower = upper
    return split


async def test_account_fields_and_no_phone(backends):
    account = await backends.clients.billing.get_account(demo.RESIDENTIAL_TOU)
    assert account.name == "张建国"
    assert (account.customer_type, account.tariff_code, account.status) == (
        "residential", "RES_TIERED_TOU", "active")
    assert (account.district, account.street, account.community) == ("江宁区", "东山街道", "百家湖社区")
    raw = await backends.clients.billing.http.get_json(f"/accounts/{demo.RESIDENTIAL_TOU}")
    assert demo.RESIDENTIAL_TOU_PHONE not in str(raw) and "phone" not in raw


@pytest.mark.parametrize("number", ["3999999999", "12345", "320123456x"])
async def test_unknown_account_is_not_found(backends, number):
    with pytest.raises(BillingNotFound) as caught:
        await backends.clients.billing.get_account(number)
    assert isinstance(caught.value, NotFound) and caught.value.status == 404


async def test_verify_phone_last4(backends):
    billing = backends.clients.billing
    assert await billing.verify_phone(demo.RESIDENTIAL_TOU, demo.RESIDENTIAL_TOU_PHONE[-4:]) is True
    assert await billing.verify_phone(demo.RESIDENTIAL_TOU, demo.OVERDUE_PHONE[-4:]) is False
    with pytest.raises(BillingNotFound):
        await billing.verify_phone("3999999999", "5678")


@pytest.mark.parametrize("bad", ["567", "56789", "abcd", "５６７８"])
async def test_verify_rejects_malformed_digits(backends, bad):
    with pytest.raises(BillingRejected) as caught:
        await backends.clients.billing.verify_phone(demo.RESIDENTIAL_TOU, bad)
    assert isinstance(caught.value, BackendRejected)
    assert caught.value.status == 400 and caught.value.code == "bad_request"


async def test_twelve_full_months_newest_first(backends):
    bills = await backends.clients.billing.list_bills(demo.RESIDENTIAL_TOU, limit=12)
    # The clock is 2026-11-23: the bills are 2025-11 … 2026-10.
    assert [b.month for b in bills] == [f"2026-{m:02d}" for m in range(10, 0, -1)] + ["2025-12", "2025-11"]
    assert [b.month for b in await backends.clients.billing.list_bills(demo.RESIDENTIAL_TOU, 3)] == [
        "2026-10", "2026-09", "2026-08"]
    first = bills[0]
    assert str(first.period_start) == "2026-10-01" and str(first.period_end) == "2026-10-31"
    assert str(first.due_date) == "2026-11-25"


@pytest.mark.parametrize("account", [demo.RESIDENTIAL_TOU, demo.OVERDUE, demo.COMMERCIAL,
                                     demo.ENTERPRISE])
async def test_bill_arithmetic_matches_the_tariff_table(backends, account):
    billing = backends.clients.billing
    tariffs = {t.tariff_code: t for t in await billing.list_tariffs()}
    tariff = tariffs[(await billing.get_account(account)).tariff_code]
    bills = sorted(await billing.list_bills(account), key=lambda b: b.month)
    for bill in bills:
        lines = [*bill.tiers, *bill.time_of_use]
        assert lines, bill
        for line in lines:
            assert line.amount == _charge(line.kwh, line.price), (bill.month, line)
        assert bill.amount == sum((line.amount for line in lines), Decimal("0")), bill.month
        if bill.time_of_use:
            assert bill.kwh_peak + bill.kwh_valley == bill.kwh_total
            prices = {p.period: p.price for p in tariff.time_of_use}
            assert {p.period: p.price for p in bill.time_of_use} == prices
            assert {p.period: p.kwh for p in bill.time_of_use} == {
                "peak": bill.kwh_peak, "valley": bill.kwh_valley}
        else:
            assert bill.kwh_peak is None and bill.kwh_valley is None
        if tariff.tiers:
            assert sum(t.kwh for t in bill.tiers) == bill.kwh_total
            base = tariff.tiers[0].price
            for line in bill.tiers:
                listed = tariff.tiers[line.tier - 1].price
                assert line.price == (listed - base if tariff.time_of_use else listed)


async def test_residential_tiers_follow_the_annual_cumulative_consumption(backends):
    billing = backends.clients.billing
    tariff = {t.tariff_code: t for t in await billing.list_tariffs()}["RES_TIERED_TOU"]
    assert [(t.tier, t.upto_kwh, t.price) for t in tariff.tiers] == [
        (1, 2760, Decimal("0.5283")), (2, 4800, Decimal("0.5783")), (3, None, Decimal("0.8283"))]
    bills = sorted(await billing.list_bills(demo.RESIDENTIAL_TOU), key=lambda b: b.month)
    this_year = [b for b in bills if b.month.startswith("2026")]
    assert [b.month for b in this_year] == [f"2026-{m:02d}" for m in range(1, 11)]
    before = 0
    for bill in this_year:  # January resets the year's count
        total = int(bill.kwh_total)
        expected = _expected_tier_kwh(tariff, before, total)
        got = {t.tier: int(t.kwh) for t in bill.tiers if t.kwh}
        assert got == expected, bill.month
        assert bill.tier_reached == max(expected)
        assert [t.tier for t in bill.tiers] == list(range(1, bill.tier_reached + 1))
        before += total
    # The demo account is meant to show tier 2 in the latest bills.
    assert this_year[-1].tier_reached >= 2 and before > 2760
    assert any(b.tier_reached == 1 for b in this_year)


async def test_previous_month_figures(backends):
    bills = await backends.clients.billing.list_bills(demo.OVERDUE)
    for newer, older in zip(bills, bills[1:]):
        assert newer.previous_month_kwh == older.kwh_total
        assert newer.previous_month_amount == older.amount


async def test_get_bill_by_month(backends):
    billing = backends.clients.billing
    listed = {b.month: b for b in await billing.list_bills(demo.COMMERCIAL)}
    assert await billing.get_bill(demo.COMMERCIAL, "2026-07") == listed["2026-07"]
    for month in ("2026-11", "2024-01"):  # current month not billed yet; older than 12 months
        with pytest.raises(BillingNotFound):
            await billing.get_bill(demo.COMMERCIAL, month)
    with pytest.raises(BillingRejected):
        await billing.get_bill(demo.COMMERCIAL, "2026-13")


async def test_overdue_account_has_arrears_equal_to_its_unpaid_bills(backends):
    billing = backends.clients.billing
    bills = await billing.list_bills(demo.OVERDUE)
    assert [b.status for b in bills[:3]] == ["unpaid", "overdue", "paid"]
    assert bills[0].paid_amount == 0 and bills[2].paid_amount == bills[2].amount
    balance = await billing.get_balance(demo.OVERDUE)
    assert balance.arrears == bills[0].amount + bills[1].amount > 0
    assert balance.balance == 0
    assert balance.last_payment is not None
    assert balance.last_payment.amount == bills[2].amount
    assert balance.last_payment.paid_at.date().isoformat() < "2026-10-25"


async def test_unpaid_bill_becomes_overdue_after_its_due_date(backends):
    from datetime import timedelta
    backends.clock.now = backends.clock.now + timedelta(days=3)  # 2026-11-26, after the 25th
    bills = await backends.clients.billing.list_bills(demo.OVERDUE, limit=1)
    assert bills[0].status == "overdue"


async def test_prepaid_commercial_balance(backends):
    balance = await backends.clients.billing.get_balance(demo.COMMERCIAL)
    assert balance.balance == Decimal("12684.50") and balance.arrears == 0
    assert balance.last_payment.channel == "预存电费抵扣"
    bills = await backends.clients.billing.list_bills(demo.COMMERCIAL)
    assert all(b.status == "paid" for b in bills)
    assert all(not b.tiers and len(b.time_of_use) == 2 for b in bills)


async def test_every_account_has_consistent_bills(backends):
    """All seeded accounts: 12 bills each, each summing exactly; arrears = unpaid amounts."""
    import sqlite3

    with sqlite3.connect(backends.db_path) as db:
        rows = db.execute("SELECT account_number FROM accounts ORDER BY account_number").fetchall()
    assert 250 <= len(rows) <= 400
    billing = backends.clients.billing
    overdue_seen = 0
    for (number,) in rows[::7]:
        bills = await billing.list_bills(number)
        assert len(bills) == 12
        for bill in bills:
            assert bill.amount == sum((x.amount for x in (*bill.tiers, *bill.time_of_use)), Decimal("0"))
        unpaid = sum((b.amount - b.paid_amount for b in bills if b.status != "paid"), Decimal("0"))
        assert (await billing.get_balance(number)).arrears == unpaid
        overdue_seen += any(b.status == "overdue" for b in bills)
    assert overdue_seen >= 2

