"""The console's operations on hand-offs, with the access rules, shared by the JSON API and the
live socket. Every operation answers ``(HTTP status, JSON body)``; none raises on bad input.

Access: a supervisor sees every conversation; an agent sees the conversations of their queues
and those they hold (a conversation transferred to them by name). Anything else is 403, on
every operation. Changing an active conversation held by another agent (transfer, close, reply)
is 409 ``not_yours``, except for supervisors' transfers and closes.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from channels.console.auth import User, UserStore, valid_queue
from channels.console.lookups import Lookups
from channels.handoff.service import HandoffService
from channels.handoff.store import HandoffStore
from integrations.masking import log_conversation_id, mask_account

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
TRANSCRIPT_MESSAGES = 100
LOOKUP_CONCURRENCY = 16
CHANNELS = ("web", "wechat", "sms")
TAKE_OVER_REASON = "客服主动接入"

Answer = tuple[int, dict[str, Any]]


def can_see(user: User, queue: str | None, holder: str | None) -> bool:
    """May ``user`` see a conversation of ``queue`` held by ``holder``?"""
    return user.supervisor or (queue or "") in user.queues or bool(holder and holder == user.name)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _error(status: int, error: str, **more: Any) -> Answer:
    return status, {"error": error, **more}


class Desk:
    """The operations of one gateway instance's console."""

    def __init__(self, handoff: Callable[[], HandoffService], users: UserStore, lookups: Lookups,
                 clock: Callable[[], float] = time.time) -> None:
        """``handoff`` gives the gateway's hand-off service (set once the app has started)."""
        self._handoff = handoff
        self.users = users
        self.lookups = lookups
        self._clock = clock
        self._lookup_slots = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    @property
    def service(self) -> HandoffService:
        return self._handoff()

    @property
    def store(self) -> HandoffStore:
        return self._handoff().store

    # -- views -------------------------------------------------------------------------------

    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        """A hand-off record as the console shows it (the 户号 masked)."""
        created = _number(record.get("created_at"))
        state = record.get("state", "")
        return {
            "cid": record.get("cid", ""),
            "handoff_id": record.get("handoff_id", ""),
            "state": state,
            "queue": record.get("queue", ""),
            "agent": record.get("agent") or None,
            "channel": record.get("channel") or record.get("cid", "").partition(":")[0],
            "customer_type": record.get("customer_type") or "residential",
            "account_masked": mask_account(record["account"]) if record.get("account") else None,
            "reason": record.get("reason", ""),
            "created_at": created,
            "claimed_at": _number(record.get("claimed_at")),
            "closed_at": _number(record.get("closed_at")),
            "waiting_seconds": round(max(0.0, self._clock() - created), 1)
            if created is not None and state == "waiting" else None,
        }

    async def _enriched(self, record: dict[str, str]) -> dict[str, Any]:
        async with self._lookup_slots:
            about = await self.lookups.about(record.get("cid", ""), record.get("account", ""))
        return {**self.summary(record), **about}

    async def visible_queues(self, user: User) -> list[str]:
        if not user.supervisor:
            return list(user.queues)
        return sorted(set(await self.store.queues()) | set(await self.users.queues()))

    async def conversations(self, user: User, state: str, mine: bool) -> Answer:
        """The waiting list of the user's queues, or the active conversations (an agent's own;
        a supervisor's own with ``mine``, else all)."""
        if state == "waiting":
            records = await self.store.waiting(await self.visible_queues(user))
        elif state == "active":
            holder = user.name if mine or not user.supervisor else None
            records = await self.store.active(holder)
        else:
            return _error(400, "bad_state", allowed=["waiting", "active"])
        records = [r for r in records if can_see(user, r.get("queue"), r.get("agent"))]
        items = await asyncio.gather(*(self._enriched(r) for r in records))
        return 200, {"conversations": list(items), "now": self._clock()}

    async def _visible(self, user: User, cid: str) -> tuple[dict[str, str] | None, Answer | None]:
        record = await self.store.get(cid) if cid else None
        if record is None:
            return None, _error(404, "not_found")
        if not can_see(user, record.get("queue"), record.get("agent")):
            return None, _error(403, "forbidden")
        return record, None

    async def detail(self, user: User, cid: str) -> Answer:
        record, refused = await self._visible(user, cid)
        if refused:
            return refused
        conversation, messages = await asyncio.gather(self._enriched(record),
                                                      self.store.messages(cid, TRANSCRIPT_MESSAGES))
        return 200, {"conversation": conversation, "messages": [_message(m) for m in messages]}

    async def messages(self, user: User, cid: str) -> Answer:
        record, refused = await self._visible(user, cid)
        if refused:
            return refused
        messages = await self.store.messages(cid, TRANSCRIPT_MESSAGES)
        return 200, {"messages": [_message(m) for m in messages]}

    # -- changes -----------------------------------------------------------------------------

    async def claim(self, user: User, cid: str) -> Answer:
        record, refused = await self._visible(user, cid)
        if refused:
            return refused
        if not await self.service.claim(cid, user.name):
            current = await self.store.get(cid) or record
            return _error(409, "not_waiting", conversation=self.summary(current))
        log.info("console: %s claimed %s", user.name, log_conversation_id(cid))
        return 200, {"ok": True, "conversation": self.summary(await self.store.get(cid) or record)}

    async def transfer(self, user: User, cid: str, body: Any) -> Answer:
        if not isinstance(body, dict):
            return _error(400, "bad_request", detail="a JSON object {queue?, agent?}")
        queue, agent = body.get("queue") or None, body.get("agent") or None
        if not queue and not agent:
            return _error(400, "bad_request", detail="transfer needs a queue or an agent")
        if queue is not None and not valid_queue(queue):
            return _error(400, "bad_queue")
        if agent is not None and (not isinstance(agent, str) or await self.users.get(agent) is None):
            return _error(400, "unknown_agent")
        record, refused = await self._visible(user, cid)
        if refused:
            return refused
        if not user.supervisor and _held_by_other(record, user):
            return _error(409, "not_yours", conversation=self.summary(record))
        if not await self.service.transfer(cid, queue=queue, agent=agent):
            return _error(409, "not_open", conversation=self.summary(record))
        log.info("console: %s transferred %s to %s", user.name, log_conversation_id(cid),
                 agent or queue)
        return 200, {"ok": True, "conversation": self.summary(await self.store.get(cid) or record)}

    async def close(self, user: User, cid: str) -> Answer:
        record, refused = await self._visible(user, cid)
        if refused:
            return refused
        if not user.supervisor and _held_by_other(record, user):
            return _error(409, "not_yours", conversation=self.summary(record))
        if record.get("state") not in ("waiting", "active") or not await self.service.close(cid, user.name):
            return _error(409, "not_open", conversation=self.summary(record))
        log.info("console: %s closed %s", user.name, log_conversation_id(cid))
        return 200, {"ok": True, "conversation": self.summary(await self.store.get(cid) or record)}

    async def take_over(self, user: User, cid: str, body: Any) -> Answer:
        """``user`` takes ``cid`` over from the assistant (no request needed): active, held by
        them, in ``queue`` (default their first queue), which must be theirs."""
        body = body if isinstance(body, dict) else {}
        queue = body.get("queue") or (user.queues[0] if user.queues else "general")
        if not valid_queue(queue):
            return _error(400, "bad_queue")
        channel, _, user_id = cid.partition(":")
        if channel not in CHANNELS or not user_id:
            return _error(400, "bad_conversation")
        if not user.supervisor and queue not in user.queues:
            return _error(403, "forbidden")
        record = await self.store.get(cid)
        if record and record.get("state") in ("waiting", "active") \
                and not can_see(user, record.get("queue"), record.get("agent")):
            return _error(403, "forbidden")
        reason = body.get("reason") if isinstance(body.get("reason"), str) else ""
        record = await self.service.take_over(cid, user.name, queue=queue,
                                              reason=reason.strip()[:200] or TAKE_OVER_REASON)
        if record.get("state") != "active" or record.get("agent") != user.name:
            return _error(409, "not_yours", conversation=self.summary(record))
        log.info("console: %s took %s over", user.name, log_conversation_id(cid))
        return 200, {"ok": True, "conversation": self.summary(record)}

    async def reply(self, user: User, cid: str, text: Any) -> Answer:
        """Send ``text`` to the customer of ``cid``, held by ``user``."""
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
            return _error(400, "bad_text", max_chars=MAX_TEXT_CHARS)
        record, refused = await self._visible(user, cid)
        if refused:
            return refused
        if record.get("state") != "active" or record.get("agent") != user.name:
            return _error(409, "not_yours", conversation=self.summary(record))
        result = await self.service.agent_reply(cid, user.name, text.strip())
        return 200, {"ok": result.status in ("sent", "queued"),
                     "delivery": {"status": result.status, "reason": result.reason,
                                  "when": result.when, "retry": result.retry}}

    async def stats(self, user: User, day: str | None = None) -> Answer:
        """The supervisor's figures of today, or of ``day`` (``yyyy-mm-dd``)."""
        if not user.supervisor:
            return _error(403, "forbidden")
        if day is not None:
            try:
                day = dt.date.fromisoformat(day).isoformat()
            except ValueError:
                return _error(400, "bad_day", format="yyyy-mm-dd")
        return 200, await self.store.stats(day)


def _held_by_other(record: dict[str, str], user: User) -> bool:
    return record.get("state") == "active" and record.get("agent") not in ("", None, user.name)


def _message(entry: dict[str, str]) -> dict[str, Any]:
    return {"id": entry.get("id", ""), "sender": entry.get("sender", ""), "text": entry.get("text", ""),
            "at": _number(entry.get("at")), "agent": entry.get("agent") or None}
