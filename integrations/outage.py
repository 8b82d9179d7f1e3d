"""Outage backend client: planned and fault outages by area, 户号 or id, and the known areas."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator, Optional, Protocol
from urllib.parse import quote

from integrations.errors import (
    BackendRejected, BackendUnavailable, BadBackendResponse, ErrorFamily, IntegrationError, NotFound,
)
from integrations.http import JsonHttpClient, parse_or_raise, to_datetime, to_datetime_or_none, to_list
from integrations.paging import Page, check_limit, every_page, page_from_json


class OutageError(IntegrationError):
    """Any failure of the outage backend."""


class OutageUnavailable(OutageError, BackendUnavailable):
    pass


class OutageNotFound(OutageError, NotFound):
    pass


class OutageRejected(OutageError, BackendRejected):
    pass


class BadOutageResponse(OutageError, BadBackendResponse):
    pass


ERRORS = ErrorFamily(OutageUnavailable, OutageNotFound, OutageRejected, BadOutageResponse)

STATUSES = ("active", "planned", "ongoing", "all")


@dataclass(frozen=True)
class Outage:
    outage_id: str
    kind: str  # planned | fault
    status: str  # scheduled | ongoing | restored
    district: str
    street: str
    community: str
    affected_area: str
    reason: str
    start_time: datetime
    end_time: Optional[datetime]  # planned end / expected restoration
    announced_at: datetime
    restored_at: Optional[datetime] = None  # set once restored
    updated_at: Optional[datetime] = None  # the latest change: announced, rescheduled or restored
    revision: int = 1  # 1 + how many times the window was moved
    previous_start_time: Optional[datetime] = None  # the window before it was moved
    previous_end_time: Optional[datetime] = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Outage":
        return cls(str(d["outage_id"]), str(d["kind"]), str(d["status"]), str(d["district"]),
                   str(d["street"]), str(d["community"]), str(d["affected_area"]),
                   str(d.get("reason") or ""), to_datetime(d["start_time"]),
                   to_datetime_or_none(d.get("end_time")), to_datetime(d["announced_at"]),
                   to_datetime_or_none(d.get("restored_at")), to_datetime_or_none(d.get("updated_at")),
                   int(d.get("revision") or 1), to_datetime_or_none(d.get("previous_start_time")),
                   to_datetime_or_none(d.get("previous_end_time")))


@dataclass(frozen=True)
class OutageChange:
    """An outage and its latest change: ``new`` (announced), ``rescheduled`` or ``restored``."""

    change: str
    outage: Outage

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "OutageChange":
        return cls(str(d["change"]), Outage.from_json(d))


@dataclass(frozen=True)
class Area:
    district: str
    street: str
    community: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Area":
        return cls(str(d["district"]), str(d["street"]), str(d["community"]))


class OutageClient(Protocol):
    async def find_outages(self, area: Optional[str] = None, account_number: Optional[str] = None,
                           status: str = "active") -> list[Outage]: ...
    async def get_outage(self, outage_id: str) -> Outage: ...
    async def list_areas(self) -> list[Area]: ...
    async def changes_page(self, since: datetime, *, after: Optional[str] = None,
                           limit: int = 100) -> Page[OutageChange]: ...
    def changes(self, since: datetime, page_size: int = 100) -> AsyncIterator[tuple[OutageChange, ...]]: ...
    async def close(self) -> None: ...


class HttpOutageClient:
    """``OutageClient`` over the outage HTTP API."""

    def __init__(self, base_url: str, timeout_s: float = 3.0, retries_for_reads: int = 2) -> None:
        self.http = JsonHttpClient(base_url, timeout_s, retries_for_reads, errors=ERRORS,
                                   service="outage")

    async def find_outages(self, area: Optional[str] = None, account_number: Optional[str] = None,
                           status: str = "active") -> list[Outage]:
        """Outages matching a free-text area and/or the area of a 户号.

        ``status``: ``active`` (ongoing + planned within 7 days), ``planned``, ``ongoing``, ``all``.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        data = await self.http.get_json(
            "/outages", {"area": area or None, "account_number": account_number or None,
                         "status": status})
        return parse_or_raise(ERRORS, "outage", "outages",
                              lambda d: [Outage.from_json(o) for o in to_list(d["outages"])], data)

    async def get_outage(self, outage_id: str) -> Outage:
        """One outage by id, as of now (its status may be ``restored``); OutageNotFound if unknown."""
        data = await self.http.get_json(f"/outages/{quote(outage_id, safe='')}")
        return parse_or_raise(ERRORS, "outage", "outage", Outage.from_json, data)

    async def list_areas(self) -> list[Area]:
        data = await self.http.get_json("/areas")
        return parse_or_raise(ERRORS, "outage", "areas",
                              lambda d: [Area.from_json(a) for a in to_list(d["areas"])], data)

    async def changes_page(self, since: datetime, *, after: Optional[str] = None,
                           limit: int = 100) -> Page[OutageChange]:
        """Outages announced, rescheduled or restored after ``since`` (aware), oldest change first."""
        if since.tzinfo is None:
            raise ValueError("since must be an aware datetime")
        data = await self.http.get_json("/outages/changes", {"since": since.isoformat(), "after": after,
                                                             "limit": check_limit(limit)})
        return parse_or_raise(ERRORS, "outage", "changes",
                              lambda d: page_from_json(d, "outages", OutageChange.from_json), data)

    def changes(self, since: datetime, page_size: int = 100) -> AsyncIterator[tuple[OutageChange, ...]]:
        return every_page(lambda after, n: self.changes_page(since, after=after, limit=n), page_size,
                          ERRORS, "outage")

    async def close(self) -> None:
        await self.http.close()
