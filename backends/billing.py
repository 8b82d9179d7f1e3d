"""Billing service: accounts, phone verification, bills, balances and the tariff table.

Monthly consumption is a deterministic function of the account's profile and the calendar month
(:func:`monthly_usage`), and bills are computed from it and the tariff table on every read, so
they are always the last 12 full months and always consistent with ``GET /tariffs``.
"""
from __future__ import annotations

import random
import re
import sqlite3
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Callable, Optional

from aiohttp import web

from backends.db import LOCAL_TZ, Clock, Database, iso
from backends.paging import SCAN_FACTOR, PageRequest, page_request
from backends.tariffs import TARIFFS, Charges, compute_charges
from backends.web import (CLOCK, DB, ascii_digits, bad_request, json_response, not_found,
                          read_json_object, service_app)

# Monthly consumption relative to the account's typical month (summer cooling, winter heating).
SEASON = {1: 1.30, 2: 1.20, 3: 0.95, 4: 0.85, 5: 0.90, 6: 1.10, 7: 1.50, 8: 1.60, 9: 1.15,
          10: 0.90, 11: 0.95, 12: 1.20}
DUE_DAY = 25
PAY_CHANNELS = ("网上国网App", "微信", "支付宝", "银行代扣", "营业厅柜台")
_ACCOUNT_RE = re.compile(r"[0-9]{10}")
_MONTH_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_AMOUNT_RE = re.compile(r"[0-9]{1,7}(\.[0-9]{1,2})?")


@dataclass(frozen=True)
class Usage:
    total: int
    peak: Optional[int]
    valley: Optional[int]


def _shift(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def monthly_usage(account: sqlite3.Row, year: int, month: int) -> Usage:
    """The account's metered kWh in a calendar month (deterministic; split peak/valley if ToU)."""
    rng = random.Random(f"{account['account_number']}:{year:04d}-{month:02d}")
    total = max(0, round(account["base_kwh"] * SEASON[month] * rng.uniform(0.85, 1.15)))
    if not TARIFFS[account["tariff_code"]].time_of_use:
        return Usage(total, None, None)
    peak = round(total * (account["peak_percent"] + rng.randint(-4, 4)) / 100)
    peak = min(max(peak, 0), total)
    return Usage(total, peak, total - peak)


def month_charges(account: sqlite3.Row, year: int, month: int) -> tuple[Usage, Charges]:
    tariff = TARIFFS[account["tariff_code"]]
    before = sum(monthly_usage(account, year, m).total for m in range(1, month))
    usage = monthly_usage(account, year, month)
    return usage, compute_charges(tariff, usage.total, usage.peak, usage.valley, before)


def bill_months(today: date, limit: int = 12) -> list[tuple[int, int]]:
    """The last ``limit`` full calendar months before today's month, newest first."""
    return [_shift(today.year, today.month, -i) for i in range(1, limit + 1)]


def _payment(account: sqlite3.Row, year: int, month: int, newest_index: int) -> Optional[tuple[datetime, str]]:
    """When and how the bill of (year, month) gets paid, or None if it stays unpaid."""
    payer = account["payer"]
    if payer == "overdue" and newest_index < account["unpaid_bills"]:
        return None
    rng = random.Random(f"{account['account_number']}:pay:{year:04d}-{month:02d}")
    ny, nm = _shift(year, month, 1)
    at = time(rng.randint(7, 22), rng.randint(0, 59), rng.randint(0, 59))
    if payer == "prepaid":
        return datetime.combine(date(ny, nm, 1), time(6, 0), LOCAL_TZ), "预存电费抵扣"
    if payer == "late":
        if rng.random() < 0.5:
            day = date(ny, nm, rng.randint(26, monthrange(ny, nm)[1]))
        else:
            ly, lm = _shift(ny, nm, 1)
            day = date(ly, lm, rng.randint(1, 10))
        return datetime.combine(day, at, LOCAL_TZ), rng.choice(PAY_CHANNELS)
    channel = "银行代扣" if rng.random() < 0.3 else rng.choice(PAY_CHANNELS)
    return datetime.combine(date(ny, nm, rng.randint(3, 20)), at, LOCAL_TZ), channel


def _money(value: Decimal) -> float:
    return float(value)


def build_bill(account: sqlite3.Row, year: int, month: int, newest_index: int,
               now: datetime) -> dict[str, Any]:
    """The bill of one month as the API returns it, with its payment state as of ``now``."""
    usage, charges = month_charges(account, year, month)
    py, pm = _shift(year, month, -1)
    prev_usage, prev_charges = month_charges(account, py, pm)
    ny, nm = _shift(year, month, 1)
    due = date(ny, nm, DUE_DAY)
    payment = _payment(account, year, month, newest_index)
    paid = charges.amount == 0 or (payment is not None and payment[0] <= now)
    status = "paid" if paid else ("overdue" if now.date() > due else "unpaid")
    bill = {
        "account_number": account["account_number"],
        "month": f"{year:04d}-{month:02d}",
        "period_start": date(year, month, 1).isoformat(),
        "period_end": date(year, month, monthrange(year, month)[1]).isoformat(),
        "kwh_total": usage.total,
        "kwh_peak": usage.peak,
        "kwh_valley": usage.valley,
        "amount": _money(charges.amount),
        "tier_reached": charges.tier_reached,
        "tiers": [{"tier": t["tier"], "kwh": t["kwh"], "price": float(t["price"]),
                   "amount": _money(t["amount"])} for t in charges.tiers],
        "time_of_use": [{"period": p["period"], "kwh": p["kwh"], "price": float(p["price"]),
                         "amount": _money(p["amount"])} for p in charges.time_of_use],
        "due_date": due.isoformat(),
        "status": status,
        "paid_amount": _money(charges.amount if paid else Decimal("0.00")),
        "previous_month_kwh": prev_usage.total,
        "previous_month_amount": _money(prev_charges.amount),
    }
    bill["_payment"] = (payment if paid and payment else None, charges.amount)
    return bill


def _public(bill: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in bill.items() if not k.startswith("_")}


def account_bills(account: sqlite3.Row, now: datetime, limit: int = 12) -> list[dict[str, Any]]:
    return [build_bill(account, y, m, i, now) for i, (y, m) in enumerate(bill_months(now.date(), limit))]


def account_json(row: sqlite3.Row) -> dict[str, Any]:
    """The account as the API shows it (never the phone)."""
    return {k: row[k] for k in ("account_number", "name", "customer_type", "address", "district",
                                "street", "community", "tariff_code", "status")}


def load_account(db: Database, account_number: str) -> sqlite3.Row:
    row = None
    if _ACCOUNT_RE.fullmatch(account_number):
        row = db.one("SELECT * FROM accounts WHERE account_number = ?", (account_number,))
    if row is None:
        raise not_found(f"no account {account_number[-4:]!r}…")
    return row


def customer_manager(db: Database, account_number: str) -> Optional[dict[str, str]]:
    """The account's customer manager (客户经理: 政企/大客户 accounts) as ``{id, name}``, or None."""
    row = db.one("SELECT manager_id, manager_name FROM customer_managers WHERE account_number = ?",
                 (account_number,))
    return {"id": row["manager_id"], "name": row["manager_name"]} if row else None


async def get_account(request: web.Request) -> web.Response:
    db = request.app[DB]
    account = load_account(db, request.match_info["account"])
    return json_response({**account_json(account),
                          "customer_manager": customer_manager(db, account["account_number"])})


async def verify(request: web.Request) -> web.Response:
    account = load_account(request.app[DB], request.match_info["account"])
    body = await read_json_object(request)
    last4 = body.get("phone_last4")
    if not isinstance(last4, str) or not re.fullmatch(r"[0-9]{4}", last4):
        raise bad_request("phone_last4 must be a string of 4 digits")
    return json_response({"verified": account["phone"][-4:] == last4})


async def get_contact(request: web.Request) -> web.Response:
    """The mobile on file, so the action server can text a one-time verification code.
    Internal: it must never be shown to a customer (the action server only masks it)."""
    account = load_account(request.app[DB], request.match_info["account"])
    return json_response({"mobile": account["phone"]})


async def list_bills(request: web.Request) -> web.Response:
    account = load_account(request.app[DB], request.match_info["account"])
    raw = request.query.get("limit", "12")
    if not ascii_digits(raw) or not 1 <= int(raw) <= 12:
        raise bad_request("limit must be an integer from 1 to 12")
    now = request.app[CLOCK]()
    return json_response({"bills": [_public(b) for b in account_bills(account, now, int(raw))]})


async def get_bill(request: web.Request) -> web.Response:
    account = load_account(request.app[DB], request.match_info["account"])
    month = request.match_info["month"]
    if not _MONTH_RE.fullmatch(month):
        raise bad_request("month must be YYYY-MM")
    for bill in account_bills(account, request.app[CLOCK]()):
        if bill["month"] == month:
            return json_response(_public(bill))
    raise not_found(f"no bill for {month}")


def balance_of(account: sqlite3.Row, now: datetime) -> dict[str, Any]:
    bills = account_bills(account, now)
    arrears = sum((Decimal(str(b["amount"])) - Decimal(str(b["paid_amount"])) for b in bills
                   if b["status"] != "paid"), Decimal("0.00"))
    payments = [(b["_payment"][0], b["_payment"][1]) for b in bills if b["_payment"][0]]
    last = max(payments, key=lambda p: p[0][0], default=None)
    return {
        "account_number": account["account_number"],
        "balance": _money(Decimal(account["credit_fen"]) / 100),
        "arrears": _money(arrears),
        "last_payment": None if last is None else {
            "paid_at": iso(last[0][0]), "amount": _money(last[1]), "channel": last[0][1]},
    }


async def get_balance(request: web.Request) -> web.Response:
    account = load_account(request.app[DB], request.match_info["account"])
    return json_response(balance_of(account, request.app[CLOCK]()))


async def list_tariffs(request: web.Request) -> web.Response:
    return json_response({"tariffs": [t.to_json() for t in TARIFFS.values()]})


# ---- bulk listings for the broadcasts (keyset pages in 户号 order, see backends.paging) -------

def contact_json(row: sqlite3.Row) -> dict[str, Any]:
    """An account in a bulk listing: its place and the mobile on file. Internal, like
    ``/contact``: the broadcasts text it; it must never be shown to a customer."""
    return {**{k: row[k] for k in ("account_number", "customer_type", "district", "street",
                                   "community", "status")}, "mobile": row["phone"]}


def scan_accounts(db: Database, where: list[str], params: list[Any], page: PageRequest,
                  select: Callable[[sqlite3.Row], list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], Optional[str]]:
    """Accounts matching ``where`` after the cursor, in 户号 order, each mapped by ``select`` to
    its items (none, one or several: an account's items never straddle two pages). Stops at
    ``limit`` items or ``SCAN_FACTOR × limit`` accounts read; returns the items and the cursor
    of the next page (None after the last account)."""
    sql = (f"SELECT * FROM accounts WHERE {' AND '.join([*where, 'account_number > ?'])}"
           " ORDER BY account_number LIMIT ?")
    items: list[dict[str, Any]] = []
    after, budget = page.after or "", page.limit * SCAN_FACTOR
    while True:
        chunk = min(page.limit, budget)
        rows = db.query(sql, (*params, after, chunk))
        for row in rows:
            after = row["account_number"]
            budget -= 1
            items.extend(select(row))
            if len(items) >= page.limit:
                return items, after
        if len(rows) < chunk:
            return items, None
        if budget <= 0:
            return items, after


def _date_param(request: web.Request, name: str) -> date:
    raw = request.query.get(name, "")
    try:
        if not _DATE_RE.fullmatch(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"{name} must be a date YYYY-MM-DD") from None


async def list_month_bills(request: web.Request) -> web.Response:
    """Every active account's bill of one month (issued at the start of the next month)."""
    month = request.query.get("month", "")
    if not _MONTH_RE.fullmatch(month):
        raise bad_request("month must be YYYY-MM")
    page = page_request(request)
    now = request.app[CLOCK]()
    months = bill_months(now.date())
    year, number = int(month[:4]), int(month[5:])
    if (year, number) not in months:
        raise bad_request("month must be one of the last 12 full months")
    index = months.index((year, number))
    items, after = scan_accounts(
        request.app[DB], ["status = 'active'"], [], page,
        lambda row: [{"account": contact_json(row),
                      "bill": _public(build_bill(row, year, number, index, now))}])
    return json_response({"bills": items, "next": after})


async def list_due_bills(request: web.Request) -> web.Response:
    """Unpaid bills (unpaid or overdue) whose due date lies from ``from`` to ``to``, inclusive."""
    start, end = _date_param(request, "from"), _date_param(request, "to")
    if end < start or (end - start).days > 366:
        raise bad_request("to must be on or after from, at most 366 days later")
    page = page_request(request)
    now = request.app[CLOCK]()
    months = [(i, y, m) for i, (y, m) in enumerate(bill_months(now.date()))
              if start <= date(*_shift(y, m, 1), DUE_DAY) <= end]
    months.reverse()  # oldest due date first

    def unpaid(row: sqlite3.Row) -> list[dict[str, Any]]:
        bills = (build_bill(row, y, m, i, now) for i, y, m in months)
        return [{"account": contact_json(row), "bill": _public(b)} for b in bills
                if b["status"] != "paid"]

    if not months:
        return json_response({"bills": [], "next": None})
    # Prepaid bills are settled from the credit on the 1st: never unpaid.
    items, after = scan_accounts(request.app[DB], ["status = 'active'", "payer != 'prepaid'"], [],
                                 page, unpaid)
    return json_response({"bills": items, "next": after})


async def list_arrears(request: web.Request) -> web.Response:
    """Active accounts with overdue bills (past their due date, unpaid), with those bills."""
    page = page_request(request)
    now = request.app[CLOCK]()

    def overdue(row: sqlite3.Row) -> list[dict[str, Any]]:
        bills = [b for b in reversed(account_bills(row, now)) if b["status"] == "overdue"]
        if not bills:
            return []
        total = sum((Decimal(str(b["amount"])) - Decimal(str(b["paid_amount"])) for b in bills),
                    Decimal("0.00"))
        return [{"account": contact_json(row), "arrears": _money(total),
                 "bills": [_public(b) for b in bills]}]

    # Prompt payers pay before the due date and prepaid bills are settled from the credit, so
    # only late and overdue payers can be in arrears (the bills still decide).
    items, after = scan_accounts(request.app[DB], ["status = 'active'", "payer IN ('late', 'overdue')"],
                                 [], page, overdue)
    return json_response({"accounts": items, "next": after})


async def list_low_balance(request: web.Request) -> web.Response:
    """Active prepaid accounts whose credit is below ``below`` yuan."""
    raw = request.query.get("below", "")
    if not _AMOUNT_RE.fullmatch(raw) or not 0 < Decimal(raw) <= 1_000_000:
        raise bad_request("below must be an amount in yuan (at most 2 decimals), above 0")
    page = page_request(request)
    below_fen = int(Decimal(raw) * 100)
    items, after = scan_accounts(
        request.app[DB], ["status = 'active'", "payer = 'prepaid'", "credit_fen < ?"], [below_fen],
        page, lambda row: [{"account": contact_json(row),
                            "balance": _money(Decimal(row["credit_fen"]) / 100)}])
    return json_response({"accounts": items, "next": after})


async def list_accounts(request: web.Request) -> web.Response:
    """Active accounts of an area: a district, a street (街道) or a community (社区/村)."""
    where, params = ["status = 'active'"], []
    for level in ("district", "street", "community"):
        value = (request.query.get(level) or "").strip()
        if len(value) > 50:
            raise bad_request(f"{level} is too long")
        if value:
            where.append(f"{level} = ?")
            params.append(value)
    page = page_request(request)
    items, after = scan_accounts(request.app[DB], where, params, page,
                                 lambda row: [contact_json(row)])
    return json_response({"accounts": items, "next": after})


def create_app(db: Database, clock: Clock) -> web.Application:
    """The billing API (mounted at /billing)."""
    app = service_app(db, clock, "billing")
    app.router.add_get("/accounts/{account}", get_account)
    app.router.add_post("/accounts/{account}/verify", verify)
    app.router.add_get("/accounts/{account}/contact", get_contact)
    app.router.add_get("/accounts/{account}/bills", list_bills)
    app.router.add_get("/accounts/{account}/bills/{month}", get_bill)
    app.router.add_get("/accounts/{account}/balance", get_balance)
    app.router.add_get("/tariffs", list_tariffs)
    app.router.add_get("/accounts", list_accounts)
    app.router.add_get("/bills", list_month_bills)
    app.router.add_get("/bills/due", list_due_bills)
    app.router.add_get("/arrears", list_arrears)
    app.router.add_get("/prepaid/low-balance", list_low_balance)
    return app
