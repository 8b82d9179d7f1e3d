"""Hall queue backend client: 营业厅, live queues, business types, remote ticket taking."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Protocol

from integrations.errors import (
    BackendRejected, BackendUnavailable, BadBackendResponse, ErrorFamily, IntegrationError, NotFound,
)
from integrations.http import (
    JsonHttpClient, parse_or_raise, path_segment, to_datetime, to_list, to_str_or_none,
)


class QueueError(IntegrationError):
    """Any failure of the hall queue backend."""


class QueueUnavailable(QueueError, BackendUnavailable):
    pass


class QueueNotFound(QueueError, NotFound):
    pass


class QueueRejected(QueueError, BackendRejected):
    """E.g. ``code == "hall_closed"`` (409) when taking a number at a closed hall."""


class BadQueueResponse(QueueError, BadBackendResponse):
    pass


ERRORS = ErrorFamily(QueueUnavailable, QueueNotFound, QueueRejected, BadQueueResponse)


@dataclass(frozen=True)
class Hall:
    hall_id: str
    name: str
    address: str
    district: str
    opening_hours: str
    business_types: tuple[str, ...]  # business type codes
    open_now: bool

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Hall":
        return cls(str(d["hall_id"]), str(d["name"]), str(d["address"]), str(d["district"]),
                   str(d["opening_hours"]), tuple(str(c) for c in to_list(d["business_types"])),
                   bool(d["open_now"]))


@dataclass(frozen=True)
class QueueLine:
    business_type: str
    business_name: str
    waiting: int
    now_serving: Optional[str]
    avg_service_minutes: int
    estimated_wait_minutes: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "QueueLine":
        return cls(str(d["business_type"]), str(d["business_name"]), int(d["waiting"]),
                   to_str_or_none(d.get("now_serving")), int(d["avg_service_minutes"]),
                   int(d["estimated_wait_minutes"]))


@dataclass(frozen=True)
class HallQueue:
    hall_id: str
    name: str
    open_now: bool
    updated_at: datetime
    lines: tuple[QueueLine, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "HallQueue":
        return cls(str(d["hall_id"]), str(d["name"]), bool(d["open_now"]),
                   to_datetime(d["updated_at"]),
                   tuple(QueueLine.from_json(x) for x in to_list(d["lines"])))


@dataclass(frozen=True)
class BusinessType:
    code: str
    name: str
    online: bool
    online_channels: tuple[str, ...]
    hall_only_reason: Optional[str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "BusinessType":
        return cls(str(d["code"]), str(d["name"]), bool(d["online"]),
                   tuple(str(c) for c in to_list(d.get("online_channels") or [])),
                   to_str_or_none(d.get("hall_only_reason")))


@dataclass(frozen=True)
class IssuedTicket:
    """The answer to taking a number."""

    ticket_number: str
    hall_id: str
    business_type: str
    position: int
    estimated_wait_minutes: int
    issued_at: datetime

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "IssuedTicket":
        return cls(str(d["ticket_number"]), str(d["hall_id"]), str(d["business_type"]),
                   int(d["position"]), int(d["estimated_wait_minutes"]), to_datetime(d["issued_at"]))


@dataclass(frozen=True)
class QueueTicket:
    """A number's current state: ``position`` = people ahead (0 when serving/done)."""

    ticket_number: str
    hall_id: str
    business_type: str
    status: str  # waiting | serving | done | expired
    position: int
    estimated_wait_minutes: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "QueueTicket":
        return cls(str(d["ticket_number"]), str(d["hall_id"]), str(d["business_type"]),
                   str(d["status"]), int(d["position"]), int(d["estimated_wait_minutes"]))


class QueueClient(Protocol):
    async def list_halls(self, area: Optional[str] = None) -> list[Hall]: ...
    async def get_queue(self, hall_id: str) -> HallQueue: ...
    async def list_business_types(self) -> list[BusinessType]: ...
    async def take_ticket(self, hall_id: str, business_type: str, holder: str) -> IssuedTicket: ...
    async def get_ticket(self, hall_id: str, ticket_number: str) -> QueueTicket: ...
    async def tickets_of(self, holder: str) -> list[QueueTicket]: ...
    async def close(self) -> None: ...


class HttpQueueClient:
    """``QueueClient`` over the queue HTTP API."""

    def __init__(self, base_url: str, timeout_s: float = 3.0, retries_for_reads: int = 2) -> None:
        self.http = JsonHttpClient(base_url, timeout_s, retries_for_reads, errors=ERRORS,
                                   service="queue")

    def _parse(self, what: str, parse, data: Any):
        return parse_or_raise(ERRORS, "queue", what, parse, data)

    async def list_halls(self, area: Optional[str] = None) -> list[Hall]:
        data = await self.http.get_json("/halls", {"area": area or None})
        return self._parse("halls", lambda d: [Hall.from_json(h) for h in to_list(d["halls"])], data)

    async def get_queue(self, hall_id: str) -> HallQueue:
        data = await self.http.get_json(f"/halls/{path_segment(hall_id)}/queue")
        return self._parse("queue", HallQueue.from_json, data)

    async def list_business_types(self) -> list[BusinessType]:
        data = await self.http.get_json("/business-types")
        return self._parse("business types", lambda d: [BusinessType.from_json(b) for b in
                                                        to_list(d["business_types"])], data)

    async def take_ticket(self, hall_id: str, business_type: str, holder: str) -> IssuedTicket:
        """Take a number; ``QueueRejected`` (code ``hall_closed``) when the hall is closed."""
        data = await self.http.post_json(f"/halls/{path_segment(hall_id)}/tickets",
                                         {"business_type": business_type, "holder": holder})
        return self._parse("issued ticket", IssuedTicket.from_json, data)

    async def get_ticket(self, hall_id: str, ticket_number: str) -> QueueTicket:
        data = await self.http.get_json(
            f"/halls/{path_segment(hall_id)}/tickets/{path_segment(ticket_number)}")
        return self._parse("ticket", QueueTicket.from_json, data)

    async def tickets_of(self, holder: str) -> list[QueueTicket]:
        """Today's numbers taken by ``holder`` (a conversation id)."""
        data = await self.http.get_json("/tickets", {"holder": holder})
        return self._parse("tickets", lambda d: [QueueTicket.from_json(t) for t in
                                                 to_list(d["tickets"])], data)

    async def close(self) -> None:
        await self.http.close()
