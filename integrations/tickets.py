"""Tickets backend client: repair (抢修), complaint (投诉) and callback (人工回电) tickets."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Optional, Protocol

from integrations.errors import (
    BackendRejected, BackendUnavailable, BadBackendResponse, ErrorFamily, IntegrationError, NotFound,
)
from integrations.http import (
    JsonHttpClient, parse_or_raise, path_segment, to_datetime, to_datetime_or_none, to_list,
    to_str_or_none,
)


class TicketsError(IntegrationError):
    """Any failure of the tickets backend."""


class TicketsUnavailable(TicketsError, BackendUnavailable):
    pass


class TicketNotFound(TicketsError, NotFound):
    pass


class TicketRejected(TicketsError, BackendRejected):
    pass


class BadTicketsResponse(TicketsError, BadBackendResponse):
    pass


ERRORS = ErrorFamily(TicketsUnavailable, TicketNotFound, TicketRejected, BadTicketsResponse)

KINDS = ("repair", "complaint", "callback")
SEVERITIES = ("urgent", "high", "normal", "low")


@dataclass(frozen=True)
class NewTicket:
    """What the caller sends to open a ticket; ``promised_by`` is an ISO-8601 time with offset."""

    kind: str
    category: str
    description: str
    severity: str
    conversation_id: str
    promised_by: str
    contact_phone: Optional[str] = None
    account_number: Optional[str] = None
    address: Optional[str] = None
    area: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        if isinstance(self.promised_by, datetime):
            body["promised_by"] = self.promised_by.isoformat(timespec="seconds")
        return body


@dataclass(frozen=True)
class TicketEvent:
    at: datetime
    status: str
    note: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TicketEvent":
        return cls(to_datetime(d["at"]), str(d["status"]), str(d.get("note") or ""))


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    kind: str
    category: str
    description: str
    severity: str
    status: str  # received | dispatched | processing | resolved | closed
    created_at: datetime
    updated_at: datetime
    promised_by: Optional[datetime]
    account_number: Optional[str]
    conversation_id: Optional[str]
    history: tuple[TicketEvent, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Ticket":
        return cls(str(d["ticket_id"]), str(d["kind"]), str(d["category"]), str(d["description"]),
                   str(d["severity"]), str(d["status"]), to_datetime(d["created_at"]),
                   to_datetime(d["updated_at"]), to_datetime_or_none(d.get("promised_by")),
                   to_str_or_none(d.get("account_number")), to_str_or_none(d.get("conversation_id")),
                   tuple(TicketEvent.from_json(e) for e in to_list(d.get("history") or [])))


class TicketsClient(Protocol):
    async def create_ticket(self, ticket: NewTicket) -> Ticket: ...
    async def get_ticket(self, ticket_id: str) -> Ticket: ...
    async def tickets_of(self, conversation_id: str) -> list[Ticket]: ...
    async def close(self) -> None: ...


class HttpTicketsClient:
    """``TicketsClient`` over the tickets HTTP API."""

    def __init__(self, base_url: str, timeout_s: float = 3.0, retries_for_reads: int = 2) -> None:
        self.http = JsonHttpClient(base_url, timeout_s, retries_for_reads, errors=ERRORS,
                                   service="tickets")

    async def create_ticket(self, ticket: NewTicket) -> Ticket:
        """Open a ticket (never retried: a retry could open it twice)."""
        data = await self.http.post_json("/tickets", ticket.to_json())
        return parse_or_raise(ERRORS, "tickets", "ticket", Ticket.from_json, data)

    async def get_ticket(self, ticket_id: str) -> Ticket:
        data = await self.http.get_json(f"/tickets/{path_segment(ticket_id)}")
        return parse_or_raise(ERRORS, "tickets", "ticket", Ticket.from_json, data)

    async def tickets_of(self, conversation_id: str) -> list[Ticket]:
        data = await self.http.get_json("/tickets", {"conversation_id": conversation_id})
        return parse_or_raise(ERRORS, "tickets", "tickets",
                              lambda d: [Ticket.from_json(t) for t in to_list(d["tickets"])], data)

    async def close(self) -> None:
        await self.http.close()
