"""The broadcasts' bulk listings (billing and outage) through the real HTTP clients over loopback:
keyset pages, page boundaries, filters checked against the per-account API, pinned clocks."""
from __future__ import annotations

import shutil
import sqlite3
import tracemalloc
from datetime import date, timedelta
from decimal import Decimal

import aiohttp
import pytest

from backends import demo_accounts as demo
from backends.db import Database
from integrations.billing import BillingRejected
from integrations.errors import BadBackendResponse
from integrations.paging import Page, every_page
from integrations.billing import ERRORS as BILLING_ERRORS
from tests.backends.server import running_backends


def _rows(path, sql: str, params=()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def _all(iterator) -> list:
    return [item async for page in iterator for item in page]


async def test_area_accounts_in_pages_of_three(backends):
    billing = backends.clients.billing
    expected = [r["account_number"] for r in _rows(
        backends.db_path, "SELECT account_number FROM accounts WHERE community = '百家湖社区'"
        " AND status = 'active' ORDER BY account_number")]
    assert len(expected) > 6 and demo.RESIDENTIAL_TOU in expected
    first = await billing.area_accounts_page("江宁区", "东山街道", "百家湖社区", limit=3)
    assert [a.account_number for a in first.items] == expected[:3]
    assert first.next == expected[2]  # the cursor is the last 户号 of the page
    second = await billing.area_accounts_page("江宁区", "东山街道", "百家湖社区", after=first.next, limit=3)
    assert [a.account_number for a in second.items] == expected[3:6]
    pages = [page async for page in billing.area_accounts("江宁区", "东山街道", "百家湖社区", page_size=3)]
    assert [a.account_number for page in pages for a in page] == expected
    assert all(len(page) <= 3 for page in pages)
    demo_contact = next(a for page in pages for a in page if a.account_number == demo.RESIDENTIAL_TOU)
    assert demo_contact.mobile == demo.RESIDENTIAL_TOU_PHONE and demo_contact.community == "百家湖社区"


async def test_area_accounts_leave_closed_ones_out_and_filter_by_street(backends):
    billing = backends.clients.billing
    closed = _rows(backends.db_path, "SELECT * FROM accounts WHERE account_number = ?", (demo.CLOSED,))[0]
    street = await _all(billing.area_accounts(closed["district"], closed["street"], page_size=1000))
    assert street and demo.CLOSED not in {a.account_number for a in street}
    assert {a.street for a in street} == {closed["street"]}
    everybody = await _all(billing.area_accounts(page_size=50))
    active = _rows(backends.db_path, "SELECT count(*) FROM accounts WHERE status = 'active'")[0][0]
    assert len(everybody) == len({a.account_number for a in everybody}) == active
    assert await _all(billing.area_accounts("江宁区", "东山街道", "火星社区")) == []


async def test_bills_of_a_month_match_the_per_account_bills(backends):
    billing = backends.clients.billing
    bills = await _all(billing.month_bills("2026-10", page_size=64))
    active = _rows(backends.db_path, "SELECT count(*) FROM accounts WHERE status = 'active'")[0][0]
    assert len(bills) == active and len({b.account.account_number for b in bills}) == active
    by_account = {b.account.account_number: b for b in bills}
    for number in (demo.RESIDENTIAL_TOU, demo.OVERDUE, demo.COMMERCIAL):
        assert by_account[number].bill == await billing.get_bill(number, "2026-10")
    assert by_account[demo.OVERDUE].bill.status == "unpaid"
    assert str(by_account[demo.OVERDUE].bill.due_date) == "2026-11-25"
    with pytest.raises(BillingRejected) as caught:
        await billing.month_bills_page("2026-11")  # this month: not issued yet
    assert caught.value.status == 400


async def test_bills_due_between_two_dates_are_the_unpaid_ones(backends):
    billing = backends.clients.billing
    due = await _all(billing.due_bills(date(2026, 11, 23), date(2026, 11, 26), page_size=7))
    expected = set()
    for row in _rows(backends.db_path, "SELECT account_number FROM accounts WHERE status = 'active'"):
        latest = (await billing.list_bills(row["account_number"], 1))[0]
        if latest.status != "paid":
            expected.add(row["account_number"])
    assert {b.account.account_number for b in due} == expected and len(due) == len(expected)
    assert demo.OVERDUE in expected and demo.COMMERCIAL not in expected
    assert all(b.bill.month == "2026-10" and b.bill.status == "unpaid" for b in due)
    # No bill falls due from the 27th of this month to the 20th of the next.
    assert await _all(billing.due_bills(date(2026, 11, 27), date(2026, 12, 20))) == []
    # Two days later the same bills are overdue, and the prompt payers paid in between.
    backends.clock.now += timedelta(days=3)
    later = await _all(billing.due_bills(date(2026, 11, 23), date(2026, 11, 26), page_size=500))
    assert later and all(b.bill.status == "overdue" for b in later)
    assert {b.account.account_number for b in later} <= expected


async def test_a_short_page_still_has_a_cursor(backends):
    """A filtered listing reads at most 10 × limit accounts per request: the page may be short,
    and the cursor says where to go on."""
    billing = backends.clients.billing
    page = await billing.due_bills_page(date(2026, 9, 1), date(2026, 12, 31), limit=1)
    assert len(page.items) >= 1 and page.next is not None
    seen, after, requests = [], None, 0
    while True:
        page = await billing.arrears_page(after=after, limit=1)
        requests += 1
        seen += [a.account.account_number for a in page.items]
        if page.next is None:
            break
        after = page.next
    assert len(seen) == len(set(seen)) and requests > len(seen)


async def test_arrears_are_the_accounts_with_overdue_bills(backends):
    billing = backends.clients.billing
    arrears = await _all(billing.arrears(page_size=5))
    by_account = {a.account.account_number: a for a in arrears}
    # Every late or overdue payer (the only ones who can be in arrears) and a third of the rest.
    for row in _rows(backends.db_path, "SELECT account_number FROM accounts WHERE status = 'active' AND"
                     " (payer IN ('late', 'overdue') OR rowid % 3 = 0)"):
        overdue = [b for b in await billing.list_bills(row["account_number"]) if b.status == "overdue"]
        if not overdue:
            assert row["account_number"] not in by_account
            continue
        item = by_account[row["account_number"]]
        assert [b.month for b in item.bills] == sorted(b.month for b in overdue)
        assert item.arrears == sum((b.amount for b in overdue), Decimal("0"))
    assert [b.month for b in by_account[demo.OVERDUE].bills] == ["2026-09"]


async def test_prepaid_accounts_below_a_credit(backends):
    billing = backends.clients.billing
    low = await _all(billing.low_balance(Decimal("100"), page_size=2))
    expected = _rows(backends.db_path, "SELECT account_number, credit_fen FROM accounts WHERE payer = 'prepaid'"
                     " AND status = 'active' AND credit_fen < 10000 ORDER BY account_number")
    assert [(p.account.account_number, p.balance) for p in low] == [
        (r["account_number"], Decimal(r["credit_fen"]) / 100) for r in expected]
    assert len(low) >= 3 and all(p.account.mobile for p in low)
    lowest = min(r["credit_fen"] for r in expected)
    exactly = await _all(billing.low_balance(Decimal(lowest) / 100))
    assert exactly == []  # "below" is strict
    assert demo.COMMERCIAL not in {p.account.account_number for p in low}


@pytest.mark.parametrize("query", ["below=abc", "below=0", "below=1.234", "below=100&limit=0",
                                   "below=100&limit=1001", "below=100&limit=%C2%B2"])
async def test_listing_parameters_are_checked(backends, query):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{backends.url}/billing/prepaid/low-balance?{query}") as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "bad_request"
    with pytest.raises(ValueError):
        await backends.clients.billing.area_accounts_page(limit=1001)


async def test_a_cursor_that_does_not_move_is_refused():
    async def stuck(after, limit):
        return Page((1,), "same")

    pages = every_page(stuck, 10, BILLING_ERRORS, "billing")
    assert await pages.__anext__() == (1,)
    assert await pages.__anext__() == (1,)
    with pytest.raises(BadBackendResponse):
        await pages.__anext__()


async def test_outages_changed_since_a_time(backends):
    outage = backends.clients.outage
    now = backends.clock.now
    changes = await _all(outage.changes(now - timedelta(days=3), page_size=2))
    assert changes == sorted(changes, key=lambda c: (c.outage.updated_at, c.outage.outage_id))
    assert all(now - timedelta(days=3) < c.outage.updated_at <= now for c in changes)
    kinds = {c.change for c in changes}
    assert kinds == {"new", "rescheduled", "restored"}
    moved = [c.outage for c in changes if c.change == "rescheduled"]
    assert len(moved) == 1 and moved[0].revision == 2 and moved[0].status == "scheduled"
    assert moved[0].start_time - moved[0].previous_start_time == timedelta(days=1)
    for c in changes:
        if c.change == "restored":
            assert c.outage.status == "restored" and c.outage.restored_at == c.outage.updated_at
        else:
            assert c.outage.restored_at is None
    ongoing_faults = {o.outage_id for o in await outage.find_outages(status="ongoing") if o.kind == "fault"}
    assert ongoing_faults <= {c.outage.outage_id for c in changes if c.change == "new"}
    # Since the last change there is nothing new; an hour later the next restoration shows.
    latest = changes[-1].outage.updated_at
    assert await _all(outage.changes(latest)) == []
    one = await outage.get_outage(moved[0].outage_id)
    assert (one.revision, one.previous_end_time) == (2, moved[0].previous_end_time)


async def test_outage_change_pages_do_not_overlap(backends):
    outage = backends.clients.outage
    since = backends.clock.now - timedelta(days=30)
    first = await outage.changes_page(since, limit=3)
    second = await outage.changes_page(since, after=first.next, limit=3)
    assert len(first.items) == 3 and first.next
    assert not {c.outage.outage_id for c in first.items} & {c.outage.outage_id for c in second.items}
    assert first.items[-1].outage.updated_at <= second.items[0].outage.updated_at
    with pytest.raises(ValueError):
        await outage.changes_page(since.replace(tzinfo=None))
    async with aiohttp.ClientSession() as session:
        for query in ("since=yesterday", "since=2026-11-20T10:00:00", "since=2026-11-20T10:00:00Z&after=x"):
            async with session.get(f"{backends.url}/outage/outages/changes?{query}") as response:
                assert response.status == 400, query


def test_a_database_from_before_gets_the_new_outage_columns(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE outages (outage_id TEXT PRIMARY KEY, kind TEXT NOT NULL, district TEXT NOT NULL,"
                 " street TEXT NOT NULL, community TEXT NOT NULL, affected_area TEXT NOT NULL, reason TEXT NOT NULL,"
                 " day_offset INTEGER, start_clock TEXT, end_clock TEXT, start_offset_min INTEGER,"
                 " end_offset_min INTEGER, restored_offset_min INTEGER)")
    conn.execute("INSERT INTO outages VALUES ('GZ1', 'fault', 'a', 'b', 'c', 'd', 'e', NULL, NULL, NULL, -5, 60, NULL)")
    conn.commit()
    conn.close()
    db = Database(path)
    db.create_schema()
    db.create_schema()  # idempotent
    row = db.one("SELECT * FROM outages")
    assert (row["revision"], row["changed_offset_min"], row["previous_day_offset"]) == (1, None, None)
    db.close()


async def test_memory_stays_flat_while_paging_a_large_area(seeded_db, tmp_path):
    """20,000 accounts in one community, read in pages of 500: the peak of Python allocations
    (server and client share this process) is that of a page, not of the area."""
    path = tmp_path / "large.sqlite3"
    shutil.copy(seeded_db, path)
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO accounts (account_number, name, customer_type, address, district, street, community,"
        " tariff_code, status, phone, base_kwh, peak_percent, payer, unpaid_bills, credit_fen)"
        " VALUES (?, '测试', 'residential', '宁州市', '江宁区', '东山街道', '殷巷社区', 'RES_TIERED', 'active', ?,"
        " 200, 0, 'prompt', 0, 0)",
        [(f"9{i:09d}", f"139{i:08d}") for i in range(20_000)])
    conn.commit()
    conn.close()

    async def peak_of(pages_wanted: int) -> tuple[int, int]:
        count = 0
        tracemalloc.start()
        try:
            async for page in running.clients.billing.area_accounts("江宁区", "东山街道", "殷巷社区", page_size=500):
                count += len(page)
                if count >= pages_wanted * 500:
                    break
            return count, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    async with running_backends(path) as running:
        await peak_of(1)  # warm up (sessions, caches)
        few, small_peak = await peak_of(4)
        many, large_peak = await peak_of(1000)
    assert few == 2000 and many >= 20_000
    assert large_peak < small_peak * 1.5, (small_peak, large_peak)
