"""The consumer of ``pd:handoff:requests``: the action server's requests for a human agent.

Entries (string fields; only ``conversation_id`` is required, older producers wrote the first
three only): ``conversation_id``, ``reason`` (masked, for the agent), ``requested_at`` (ISO-8601),
``queue`` (hint: ``general``, ``vip`` or ``manager:<id>``), ``customer_type`` (residential,
commercial, enterprise), ``account_masked`` (the bound 户号, masked, for logs and other
readers; the gateway reads the raw one from the binding), ``channel`` and ``trigger``
(request_human, fallback, urgent_fault, severe_complaint, enterprise_service).

Every gateway instance reads the stream in the consumer group ``handoff`` (one per deployment:
``HANDOFF_GROUP`` may name another), each as its own consumer, and opens the hand-off through
:meth:`~channels.handoff.service.HandoffService.open`, then acknowledges the entry (entries stay
in the stream, capped by its producer, for any other reader). Entries left pending by an
instance that died are claimed by another after ``HANDOFF_CLAIM_IDLE_SECONDS`` (``XAUTOCLAIM``).
A request older than ``MAX_AGE_SECONDS`` when read (the gateway was down) is dropped: the
customer has moved on.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any


from channels.handoff import metrics
from channels.handoff.service import HandoffService
from channels.handoff.store import CUSTOMER_TYPES
from channels.redis_text import redis_text
from channels.router import log_id
from channels.stream_group import StreamGroupConsumer

log = logging.getLogger(__name__)

STREAM = "pd:handoff:requests"
GROUP = "handoff"
MAX_AGE_SECONDS = 15 * 60


class HandoffRequests(StreamGroupConsumer):
    """One gateway instance's consumer of the hand-off requests stream."""

    name = "hand-off requests"

    def __init__(self, redis: Any, service: HandoffService, consumer: str, *, group: str = GROUP,
                 block_ms: int = 1000, claim_idle_seconds: float = 60.0) -> None:
        super().__init__(redis, STREAM, group, consumer, block_ms=block_ms,
                         claim_idle_seconds=claim_idle_seconds)
        self._service = service

    def count_error(self) -> None:
        metrics.ERRORS.labels("requests").inc()

    async def handle(self, entry_id: str, fields: Mapping[Any, Any] | None) -> str:
        """Open the hand-off of one entry, then acknowledge it; returns the outcome."""
        data = {redis_text(k): redis_text(v) for k, v in (fields or {}).items()}
        cid = data.get("conversation_id", "")
        channel, _, user = cid.partition(":")
        if not channel or not user:
            outcome = "malformed"
        elif self._too_old(data.get("requested_at", "")):
            outcome = "stale"
        else:
            customer_type = data.get("customer_type", "")
            record = await self._service.open(
                cid, queue=data.get("queue", "general"), reason=data.get("reason", "")[:300],
                customer_type=customer_type if customer_type in CUSTOMER_TYPES else "residential")
            outcome = "opened" if record.get("new") else record.get("state", "open") or "open"
        log.info("hand-off request %s of %s: %s", entry_id, log_id(cid) if cid else "?", outcome)
        metrics.REQUESTS.labels(outcome if outcome in ("opened", "after_hours", "stale", "malformed")
                                else "already_open").inc()
        await self._redis.xack(STREAM, self._group, entry_id)
        return outcome

    def _too_old(self, requested_at: str) -> bool:
        try:
            when = dt.datetime.fromisoformat(requested_at)
        except ValueError:
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return self._service.store.now() - when.timestamp() > MAX_AGE_SECONDS
