"""What the console shows next to a handed-off conversation, from outside the hand-off store:
the last messages with the assistant (Rasa's tracker, ``GET /conversations/<id>/tracker``), the
open tickets of the conversation (tickets backend) and the open applications of the bound 户号
(applications backend).

Each lookup has a deadline and is cached briefly per conversation (the waiting list is asked by
every agent's page); one that fails or times out is reported in ``unavailable`` and the
conversation is shown without it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from channels.rasa_client import RasaClient
from integrations.applications import ApplicationNotFound, ApplicationsClient
from integrations.errors import IntegrationError
from integrations.masking import log_conversation_id
from integrations.tickets import TicketNotFound, TicketsClient

log = logging.getLogger(__name__)

ASSISTANT_MESSAGES = 10
CACHE_SECONDS = 15.0
OPEN_TICKET_STATES = ("received", "dispatched", "processing")
OPEN_APPLICATION_STATES = ("in_progress",)


class Lookups:
    """The three lookups of one gateway instance (the clients are owned by the caller)."""

    def __init__(self, rasa: RasaClient | None, tickets: TicketsClient | None,
                 applications: ApplicationsClient | None, timeout_seconds: float) -> None:
        self._rasa = rasa
        self._tickets = tickets
        self._applications = applications
        self._timeout = timeout_seconds
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    async def about(self, cid: str, account: str) -> dict[str, Any]:
        """``{assistant_messages, open_tickets, open_applications, unavailable}`` of ``cid``."""
        names = ("assistant_messages", "open_tickets", "open_applications")
        results = await asyncio.gather(
            self._cached("rasa", cid, lambda: self.assistant_messages(cid)),
            self._cached("tickets", cid, lambda: self.open_tickets(cid)),
            self._cached("applications", account, lambda: self.open_applications(account)))
        answer: dict[str, Any] = {"unavailable": []}
        for name, result in zip(names, results):
            answer[name] = result if result is not None else []
            if result is None:
                answer["unavailable"].append(name)
        return answer

    async def _cached(self, kind: str, subject: str, fetch) -> Any:
        if not subject:
            return []
        now = time.monotonic()
        hit = self._cache.get((kind, subject))
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        try:
            value = await asyncio.wait_for(fetch(), self._timeout)
        except (asyncio.TimeoutError, aiohttp.ClientError, IntegrationError, ValueError) as exc:
            log.warning("console: %s lookup for %s failed (%s)", kind, log_conversation_id(subject)
                        if kind != "applications" else "an account", type(exc).__name__)
            value = None  # remembered too: a backend that is down is not asked on every refresh
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[(kind, subject)] = (now, value)
        return value

    async def assistant_messages(self, cid: str) -> list[dict[str, Any]]:
        """The last customer and assistant messages of Rasa's tracker, oldest first."""
        if self._rasa is None:
            return []
        url = f"{self._rasa.base_url}/conversations/{quote(cid, safe=':')}/tracker"
        async with self._rasa.session.get(url, params={"include_events": "ALL"}) as response:
            if response.status != 200:
                await response.read()
                return []
            tracker = await response.json(content_type=None)
        messages = []
        for event in (tracker or {}).get("events") or []:
            if not isinstance(event, dict) or event.get("event") not in ("user", "bot"):
                continue
            text = event.get("text")
            if not isinstance(text, str) or not text:
                continue
            messages.append({"sender": "customer" if event["event"] == "user" else "bot",
                             "text": text[:1000], "at": event.get("timestamp")})
        return messages[-ASSISTANT_MESSAGES:]

    async def open_tickets(self, cid: str) -> list[dict[str, Any]]:
        if self._tickets is None:
            return []
        try:
            tickets = await self._tickets.tickets_of(cid)
        except TicketNotFound:
            return []
        return [{"ticket_id": t.ticket_id, "kind": t.kind, "category": t.category,
                 "status": t.status, "severity": t.severity,
                 "created_at": t.created_at.isoformat(timespec="seconds"),
                 "promised_by": t.promised_by.isoformat(timespec="seconds") if t.promised_by else None}
                for t in tickets if t.status in OPEN_TICKET_STATES]

    async def open_applications(self, account: str) -> list[dict[str, Any]]:
        if self._applications is None or not account:
            return []
        try:
            applications = await self._applications.applications_of(account)
        except ApplicationNotFound:
            return []
        return [{"application_number": a.application_number, "business_type": a.business_type,
                 "status": a.status, "current_stage": a.current_stage,
                 "submitted_at": a.submitted_at.isoformat(timespec="seconds")}
                for a in applications if a.status in OPEN_APPLICATION_STATES]
