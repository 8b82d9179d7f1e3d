"""Billing backend client: accounts, phone verification, bills, balances, the tariff table."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, AsyncIterator, Optional, Protocol

from integrations.errors import (
    BackendRejected, BackendUnavailable, BadBackendResponse, ErrorFamily, IntegrationError, NotFound,
)
from integrations.http import (
    JsonHttpClient, parse_or_raise, path_segment, to_date, to_datetime, to_decimal,
    to_decimal_or_none, to_list, to_str_or_none,
)
from integrations.paging import Page, check_limit, every_page, page_from_json


class BillingError(IntegrationError):
    """Any failure of the billing backend."""


class BillingUnavailable(BillingError, BackendUnavailable):
    pass


class BillingNotFound(BillingError, NotFound):
    pass


class BillingRejected(BillingError, BackendRejected):
    pass


class BadBillingResponse(BillingError, BadBackendResponse):
    pass


ERRORS = ErrorFamily(BillingUnavailable, BillingNotFound, BillingRejected, BadBillingResponse)


@dataclass(frozen=True)
class CustomerManager:
    """The 客户经理 serving a 政企/大客户 account; ``id`` names the hand-off queue ``manager:<id>``."""

    id: str
    name: str


@dataclass(frozen=True)
class Account:
    account_number: str
    name: str
    customer_type: str  # residential | commercial | enterprise
    address: str
    district: str
    street: str
    community: str
    tariff_code: str
    status: str  # active | closed
    customer_manager: Optional[CustomerManager] = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Account":
        manager = d.get("customer_manager")
        return cls(str(d["account_number"]), str(d["name"]), str(d["customer_type"]),
                   str(d["address"]), str(d["district"]), str(d["street"]),
                   str(d["community"]), str(d["tariff_code"]), str(d["status"]),
                   CustomerManager(str(manager["id"]), str(manager["name"]))
                   if isinstance(manager, dict) and manager.get("id") else None)


@dataclass(frozen=True)
class TierCharge:
    """Energy of one 阶梯 tier in the month and its charge (``amount = kwh × price``)."""

    tier: int
    kwh: Decimal
    price: Decimal
    amount: Decimal

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TierCharge":
        return cls(int(d["tier"]), to_decimal(d["kwh"]), to_decimal(d["price"]),
                   to_decimal(d["amount"]))


@dataclass(frozen=True)
class TimeOfUseCharge:
    """Energy of one 峰/谷 period and its charge (``amount = kwh × price``)."""

    period: str  # peak | valley
    kwh: Decimal
    price: Decimal
    amount: Decimal

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TimeOfUseCharge":
        return cls(str(d["period"]), to_decimal(d["kwh"]), to_decimal(d["price"]),
                   to_decimal(d["amount"]))


@dataclass(frozen=True)
class Bill:
    """One month's bill; ``amount`` is the sum of the tier and time-of-use charges."""

    account_number: str
    month: str  # YYYY-MM
    period_start: date
    period_end: date
    kwh_total: Decimal
    kwh_peak: Optional[Decimal]
    kwh_valley: Optional[Decimal]
    amount: Decimal
    tier_reached: int
    tiers: tuple[TierCharge, ...]
    time_of_use: tuple[TimeOfUseCharge, ...]
    due_date: date
    status: str  # paid | unpaid | overdue
    paid_amount: Decimal
    previous_month_kwh: Optional[Decimal]
    previous_month_amount: Optional[Decimal]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Bill":
        return cls(
            account_number=str(d["account_number"]),
            month=str(d["month"]),
            period_start=to_date(d["period_start"]),
            period_end=to_date(d["period_end"]),
            kwh_total=to_decimal(d["kwh_total"]),
            kwh_peak=to_decimal_or_none(d.get("kwh_peak")),
            kwh_valley=to_decimal_or_none(d.get("kwh_valley")),
            amount=to_decimal(d["amount"]),
            tier_reached=int(d["tier_reached"]),
            tiers=tuple(TierCharge.from_json(t) for t in to_list(d["tiers"])),
            time_of_use=tuple(TimeOfUseCharge.from_json(t) for t in to_list(d["time_of_use"])),
            due_date=to_date(d["due_date"]),
            status=str(d["status"]),
            paid_amount=to_decimal(d["paid_amount"]),
            previous_month_kwh=to_decimal_or_none(d.get("previous_month_kwh")),
            previous_month_amount=to_decimal_or_none(d.get("previous_month_amount")),
        )


@dataclass(frozen=True)
class Payment:
    paid_at: datetime
    amount: Decimal
    channel: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Payment":
        return cls(to_datetime(d["paid_at"]), to_decimal(d["amount"]), str(d["channel"]))


@dataclass(frozen=True)
class Balance:
    """``balance`` = prepaid credit (≥ 0), ``arrears`` = unpaid amount (≥ 0)."""

    account_number: str
    balance: Decimal
    arrears: Decimal
    last_payment: Optional[Payment]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Balance":
        last = d.get("last_payment")
        return cls(str(d["account_number"]), to_decimal(d["balance"]), to_decimal(d["arrears"]),
                   Payment.from_json(last) if last else None)


@dataclass(frozen=True)
class TariffTier:
    tier: int
    upto_kwh: Optional[int]  # annual cumulative upper bound; None = no bound
    price: Decimal

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TariffTier":
        upto = d.get("upto_kwh")
        return cls(int(d["tier"]), None if upto is None else int(upto), to_decimal(d["price"]))


@dataclass(frozen=True)
class TimeOfUsePeriod:
    period: str  # peak | valley
    hours: str  # e.g. "08:00-21:00"
    price: Decimal

    @classmethod
    def from_json(cls, period: str, d: dict[str, Any]) -> "TimeOfUsePeriod":
        return cls(period, str(d["hours"]), to_decimal(d["price"]))


@dataclass(frozen=True)
class Tariff:
    tariff_code: str
    name: str
    customer_type: str
    tiers: tuple[TariffTier, ...]
    time_of_use: tuple[TimeOfUsePeriod, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Tariff":
        tou = d.get("time_of_use") or {}
        return cls(str(d["tariff_code"]), str(d["name"]), str(d["customer_type"]),
                   tuple(TariffTier.from_json(t) for t in to_list(d["tiers"])),
                   tuple(TimeOfUsePeriod.from_json(p, tou[p]) for p in ("peak", "valley") if p in tou))


@dataclass(frozen=True)
class Contact:
    """An account in a bulk listing: where it is and the mobile on file (internal: for
    texting notices, never shown to a customer)."""

    account_number: str
    customer_type: str
    district: str
    street: str
    community: str
    status: str
    mobile: Optional[str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Contact":
        return cls(str(d["account_number"]), str(d["customer_type"]), str(d["district"]),
                   str(d["street"]), str(d["community"]), str(d["status"]), to_str_or_none(d.get("mobile")))


@dataclass(frozen=True)
class AccountBill:
    account: Contact
    bill: Bill

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "AccountBill":
        return cls(Contact.from_json(d["account"]), Bill.from_json(d["bill"]))


@dataclass(frozen=True)
class Arrears:
    """An account in arrears: the total overdue and its overdue bills, oldest first."""

    account: Contact
    arrears: Decimal
    bills: tuple[Bill, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Arrears":
        return cls(Contact.from_json(d["account"]), to_decimal(d["arrears"]),
                   tuple(Bill.from_json(b) for b in to_list(d["bills"])))


@dataclass(frozen=True)
class PrepaidCredit:
    account: Contact
    balance: Decimal

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PrepaidCredit":
        return cls(Contact.from_json(d["account"]), to_decimal(d["balance"]))


class BillingClient(Protocol):
    async def get_account(self, account_number: str) -> Account: ...
    async def verify_phone(self, account_number: str, phone_last4: str) -> bool: ...
    async def get_contact_mobile(self, account_number: str) -> str: ...
    async def list_bills(self, account_number: str, limit: int = 12) -> list[Bill]: ...
    async def get_bill(self, account_number: str, month: str) -> Bill: ...
    async def get_balance(self, account_number: str) -> Balance: ...
    async def list_tariffs(self) -> list[Tariff]: ...
    async def month_bills_page(self, month: str, *, after: Optional[str] = None,
                               limit: int = 100) -> Page[AccountBill]: ...
    def month_bills(self, month: str, page_size: int = 500) -> AsyncIterator[tuple[AccountBill, ...]]: ...
    async def due_bills_page(self, due_from: date, due_to: date, *, after: Optional[str] = None,
                             limit: int = 100) -> Page[AccountBill]: ...
    def due_bills(self, due_from: date, due_to: date,
                  page_size: int = 500) -> AsyncIterator[tuple[AccountBill, ...]]: ...
    async def arrears_page(self, *, after: Optional[str] = None, limit: int = 100) -> Page[Arrears]: ...
    def arrears(self, page_size: int = 500) -> AsyncIterator[tuple[Arrears, ...]]: ...
    async def low_balance_page(self, below: Decimal, *, after: Optional[str] = None,
                               limit: int = 100) -> Page[PrepaidCredit]: ...
    def low_balance(self, below: Decimal, page_size: int = 500) -> AsyncIterator[tuple[PrepaidCredit, ...]]: ...
    async def area_accounts_page(self, district: Optional[str] = None, street: Optional[str] = None,
                                 community: Optional[str] = None, *, after: Optional[str] = None,
                                 limit: int = 100) -> Page[Contact]: ...
    def area_accounts(self, district: Optional[str] = None, street: Optional[str] = None,
                      community: Optional[str] = None,
                      page_size: int = 500) -> AsyncIterator[tuple[Contact, ...]]: ...
    async def close(self) -> None: ...


class HttpBillingClient:
    """``BillingClient`` over the billing HTTP API (see backends/openapi.yaml)."""

    def __init__(self, base_url: str, timeout_s: float = 3.0, retries_for_reads: int = 2) -> None:
        self.http = JsonHttpClient(base_url, timeout_s, retries_for_reads, errors=ERRORS,
                                   service="billing")

    def _parse(self, what: str, parse, data: Any):
        return parse_or_raise(ERRORS, "billing", what, parse, data)

    async def get_account(self, account_number: str) -> Account:
        data = await self.http.get_json(f"/accounts/{path_segment(account_number)}")
        return self._parse("account", Account.from_json, data)

    async def verify_phone(self, account_number: str, phone_last4: str) -> bool:
        """Whether ``phone_last4`` are the last 4 digits of the phone on file."""
        data = await self.http.post_json(f"/accounts/{path_segment(account_number)}/verify",
                                         {"phone_last4": phone_last4})

        def verified(d: dict) -> bool:
            if not isinstance(d["verified"], bool):
                raise TypeError("verified is not a boolean")
            return d["verified"]
        return self._parse("verification", verified, data)

    async def get_contact_mobile(self, account_number: str) -> str:
        """The mobile on file (11 digits), for texting a one-time code; never show it."""
        data = await self.http.get_json(f"/accounts/{path_segment(account_number)}/contact")

        def mobile(d: dict) -> str:
            value = d["mobile"]
            if not (isinstance(value, str) and len(value) == 11 and value.isdigit()):
                raise ValueError("mobile is not 11 digits")
            return value
        return self._parse("contact", mobile, data)

    async def list_bills(self, account_number: str, limit: int = 12) -> list[Bill]:
        """The latest ``limit`` bills, newest first."""
        data = await self.http.get_json(f"/accounts/{path_segment(account_number)}/bills",
                                        {"limit": limit})
        return self._parse("bills", lambda d: [Bill.from_json(b) for b in to_list(d["bills"])], data)

    async def get_bill(self, account_number: str, month: str) -> Bill:
        """The bill of ``month`` (``YYYY-MM``); ``BillingNotFound`` when there is none."""
        data = await self.http.get_json(
            f"/accounts/{path_segment(account_number)}/bills/{path_segment(month)}")
        return self._parse("bill", Bill.from_json, data)

    async def get_balance(self, account_number: str) -> Balance:
        data = await self.http.get_json(f"/accounts/{path_segment(account_number)}/balance")
        return self._parse("balance", Balance.from_json, data)

    async def list_tariffs(self) -> list[Tariff]:
        data = await self.http.get_json("/tariffs")
        return self._parse("tariffs", lambda d: [Tariff.from_json(t) for t in to_list(d["tariffs"])], data)

    # ---- bulk listings (keyset pages in 户号 order; see integrations.paging) ---------------

    async def _page(self, path: str, params: dict[str, Any], key: str, parse, after: Optional[str],
                    limit: int) -> Page:
        data = await self.http.get_json(path, {**params, "after": after, "limit": check_limit(limit)})
        return self._parse(key, lambda d: page_from_json(d, key, parse), data)

    def _every(self, fetch, page_size: int) -> AsyncIterator[tuple]:
        return every_page(fetch, page_size, ERRORS, "billing")

    async def month_bills_page(self, month: str, *, after: Optional[str] = None,
                               limit: int = 100) -> Page[AccountBill]:
        """Active accounts' bills of ``month`` (``YYYY-MM``, one of the last 12 full months)."""
        return await self._page("/bills", {"month": month}, "bills", AccountBill.from_json, after, limit)

    def month_bills(self, month: str, page_size: int = 500) -> AsyncIterator[tuple[AccountBill, ...]]:
        return self._every(lambda after, n: self.month_bills_page(month, after=after, limit=n), page_size)

    async def due_bills_page(self, due_from: date, due_to: date, *, after: Optional[str] = None,
                             limit: int = 100) -> Page[AccountBill]:
        """Unpaid bills (``unpaid`` or ``overdue``) due from ``due_from`` to ``due_to`` inclusive;
        an account's bills are never split between pages."""
        return await self._page("/bills/due", {"from": due_from.isoformat(), "to": due_to.isoformat()},
                                "bills", AccountBill.from_json, after, limit)

    def due_bills(self, due_from: date, due_to: date,
                  page_size: int = 500) -> AsyncIterator[tuple[AccountBill, ...]]:
        return self._every(lambda after, n: self.due_bills_page(due_from, due_to, after=after, limit=n),
                           page_size)

    async def arrears_page(self, *, after: Optional[str] = None, limit: int = 100) -> Page[Arrears]:
        """Active accounts with overdue bills."""
        return await self._page("/arrears", {}, "accounts", Arrears.from_json, after, limit)

    def arrears(self, page_size: int = 500) -> AsyncIterator[tuple[Arrears, ...]]:
        return self._every(lambda after, n: self.arrears_page(after=after, limit=n), page_size)

    async def low_balance_page(self, below: Decimal, *, after: Optional[str] = None,
                               limit: int = 100) -> Page[PrepaidCredit]:
        """Active prepaid accounts whose credit is below ``below`` yuan."""
        return await self._page("/prepaid/low-balance", {"below": f"{below:.2f}"}, "accounts",
                                PrepaidCredit.from_json, after, limit)

    def low_balance(self, below: Decimal, page_size: int = 500) -> AsyncIterator[tuple[PrepaidCredit, ...]]:
        return self._every(lambda after, n: self.low_balance_page(below, after=after, limit=n), page_size)

    async def area_accounts_page(self, district: Optional[str] = None, street: Optional[str] = None,
                                 community: Optional[str] = None, *, after: Optional[str] = None,
                                 limit: int = 100) -> Page[Contact]:
        """Active accounts of a district, street (街道) and/or community (exact names)."""
        return await self._page("/accounts", {"district": district, "street": street, "community": community},
                                "accounts", Contact.from_json, after, limit)

    def area_accounts(self, district: Optional[str] = None, street: Optional[str] = None,
                      community: Optional[str] = None,
                      page_size: int = 500) -> AsyncIterator[tuple[Contact, ...]]:
        return self._every(lambda after, n: self.area_accounts_page(district, street, community,
                                                                    after=after, limit=n), page_size)

    async def close(self) -> None:
        await self.http.close()
