"""Billing backend client: accounts, phone verification, bills, balances, the tariff table."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Optional, Protocol

from integrations.errors import (
    BackendRejected, BackendUnavailable, BadBackendResponse, ErrorFamily, IntegrationError, NotFound,
)
from integrations.http import (
    JsonHttpClient, parse_or_raise, path_segment, to_date, to_datetime, to_decimal,
    to_decimal_or_none, to_list,
)


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

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Account":
        return cls(str(d["account_number"]), str(d["name"]), str(d["customer_type"]),
                   str(d["address"]), str(d["district"]), str(d["street"]),
                   str(d["community"]), str(d["tariff_code"]), str(d["status"]))


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


class BillingClient(Protocol):
    async def get_account(self, account_number: str) -> Account: ...
    async def verify_phone(self, account_number: str, phone_last4: str) -> bool: ...
    async def get_contact_mobile(self, account_number: str) -> str: ...
    async def list_bills(self, account_number: str, limit: int = 12) -> list[Bill]: ...
    async def get_bill(self, account_number: str, month: str) -> Bill: ...
    async def get_balance(self, account_number: str) -> Balance: ...
    async def list_tariffs(self) -> list[Tariff]: ...
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

    async def close(self) -> None:
        await self.http.close()
