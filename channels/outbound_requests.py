"""The consumer of ``pd:outbound:requests``: notices requested by other processes.

The action server (and any other producer) asks the gateway to send a notice by appending an
entry to the Redis stream ``pd:outbound:requests`` with string fields:

- ``conversation_id``: ``<channel>:<user id>`` (e.g. ``sms:13812345678``);
- ``purpose``: ``notice`` (the only purpose a producer may ask for);
- ``kind``: the notice's kind (``verification_code``, ``outage_notice`` …);
- ``params``: a JSON object of the notice's parameters (values become strings);
- ``urgent``: ``1`` or ``0`` (urgent notices are exempt from quiet hours);
- ``requested_by``: who asked, for the logs (e.g. ``action_send_verification_code``).

Every gateway instance reads the stream in the consumer group ``gateway``, passes each request to
:meth:`channels.delivery.Deliverer.deliver`, records the result in the hash
``pd:outbound:result:<entry id>`` (``status``, ``reason``, ``when``, ``retry``; kept a day, for
the producer to look up) and only then acknowledges and deletes the entry (``XACK`` + ``XDEL``).
A failure that a retry may fix is handed to the deliverer's schedule (recorded as ``queued``
``retry``). Entries left pending by an instance that died are claimed by another after
``claim_idle_seconds`` (``XAUTOCLAIM``): at least once. Malformed entries are logged, counted
and dropped.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any


from channels import metrics
from channels.delivery import Deliverer
from channels.messages import DeliveryResult, Notice
from channels.redis_text import redis_text
from channels.router import log_id
from channels.stream_group import StreamGroupConsumer

log = logging.getLogger(__name__)

STREAM = "pd:outbound:requests"
GROUP = "gateway"
RESULT_PREFIX = "pd:outbound:result:"
RESULT_TTL_SECONDS = 86400
RETRY_DELAY_SECONDS = 30.0
MAX_PARAMS_BYTES = 4096


class MalformedRequest(ValueError):
    """A stream entry that is not a valid outbound request."""


def parse_request(fields: Mapping[Any, Any]) -> tuple[str, Notice, str]:
    """``(conversation_id, notice, requested_by)`` of one entry; raises MalformedRequest."""
    data = {redis_text(k): redis_text(v) for k, v in (fields or {}).items()}
    conversation_id = data.get("conversation_id", "")
    channel, _, user_id = conversation_id.partition(":")
    if not channel or not user_id:
        raise MalformedRequest("conversation_id must be <channel>:<user id>")
    if data.get("purpose", "notice") != "notice":
        raise MalformedRequest(f"purpose must be notice, got {data.get('purpose')!r}")
    kind = data.get("kind", "").strip()
    if not kind:
        raise MalformedRequest("kind is missing")
    raw_params = data.get("params") or "{}"
    if len(raw_params) > MAX_PARAMS_BYTES:
        raise MalformedRequest("params too long")
    try:
        params = json.loads(raw_params)
    except ValueError:
        raise MalformedRequest("params is not JSON") from None
    if not isinstance(params, dict) or any(
            isinstance(v, (dict, list)) or v is None for v in params.values()):
        raise MalformedRequest("params must be a JSON object of scalar values")
    urgent = data.get("urgent", "0")
    if urgent not in ("0", "1"):
        raise MalformedRequest(f"urgent must be 1 or 0, got {urgent!r}")
    notice = Notice(kind, {str(k): str(v) for k, v in params.items()}, urgent == "1")
    return conversation_id, notice, data.get("requested_by", "")[:64]


class OutboundRequests(StreamGroupConsumer):
    """One gateway instance's consumer of the outbound requests stream."""

    name = "outbound requests"

    def __init__(self, redis: Any, deliverer: Deliverer, consumer: str, *,
                 stream: str = STREAM, group: str = GROUP, block_ms: int = 1000,
                 claim_idle_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(redis, stream, group, consumer, block_ms=block_ms,
                         claim_idle_seconds=claim_idle_seconds)
        self._deliverer = deliverer
        self._clock = clock

    def count_error(self) -> None:
        metrics.ERRORS.labels("outbound_requests").inc()

    async def handle(self, entry_id: str, fields: Mapping[Any, Any] | None) -> DeliveryResult | None:
        """Deliver one entry, record its result, then acknowledge and delete it."""
        if fields is None:
            await self._done(entry_id)  # deleted by someone else: nothing to deliver
            return None
        try:
            conversation_id, notice, requested_by = parse_request(fields or {})
        except MalformedRequest as exc:
            log.warning("outbound request %s dropped: %s", entry_id, exc)
            metrics.OUTBOUND_REQUESTS.labels("malformed").inc()
            await self._done(entry_id)
            return None
        result = await self._deliverer.deliver(conversation_id, notice, "notice")
        if result.status == "failed" and result.retry:
            result = await self._deliverer.schedule(
                conversation_id, notice, "notice", self._clock() + RETRY_DELAY_SECONDS,
                "retry", attempt=1)
        await self._redis.hset(RESULT_PREFIX + entry_id, mapping={
            "status": result.status, "reason": result.reason,
            "when": "" if result.when is None else repr(result.when),
            "retry": int(result.retry), "conversation_id": conversation_id})
        await self._redis.expire(RESULT_PREFIX + entry_id, RESULT_TTL_SECONDS)
        await self._done(entry_id)
        metrics.OUTBOUND_REQUESTS.labels(result.status).inc()
        # requested_by may be the asking conversation's id: a web session id is a bearer secret.
        log.info("outbound request %s (%s, by %s) to %s: %s", entry_id, notice.kind,
                 log_id(requested_by) if requested_by else "?", log_id(conversation_id),
                 result.status)
        return result

    async def _done(self, entry_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream, self._group, entry_id)
            pipe.xdel(self._stream, entry_id)
            await pipe.execute()
