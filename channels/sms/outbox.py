"""The SMS outbox: every SMS goes through it; what cannot go now waits in Redis, never dropped.

Each message is a Redis hash ``pd:sms:msg:<id>`` (state, phone, template, params, attempts,
provider id, billed segments, error). Messages waiting for a time — quiet hours, a rate limit,
provider flow control, a retry — sit in the sorted set ``pd:sms:outbox`` scored by the unix time
they may go; any gateway instance's worker takes them when due (``ZREM`` decides who).

Rules, in order, before each attempt:
- proactive messages to a number that opted out are suppressed (recorded, not sent);
- non-urgent proactive messages wait out quiet hours;
- the number's budget (``proactive`` or ``reply``) must allow one more message, else the
  message waits until the window rolls over (logged);
then the provider's answer decides: sent; throttled → later; transient → exponential backoff
up to ``max_attempts``; permanent → failed with the provider's code. Delivery reports move a sent
message to ``delivered`` / ``undelivered``; a report that arrives before the send result was
recorded is parked and applied when it is.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from dataclasses import dataclass
from typing import Any

from channels.sms import metrics
from channels.sms.optout import OptOutStore
from channels.sms.phones import mask
from channels.sms.providers.base import Outcome, SendResult, SmsRequest, SmsSender
from channels.sms.quiet_hours import QuietHours
from channels.sms.ratelimit import RateLimiter
from channels.sms.templates import OutgoingSms

log = logging.getLogger("channels.sms.outbox")

QUEUE_KEY = "pd:sms:outbox"
MSG_TTL = 7 * 86400
REPORT_TTL = 3 * 86400
MAX_AGE = 86400          # a message still not sent after a day is given up (recorded)
STALE_REPLY = 600        # a reply still waiting after 10 minutes respects quiet hours
FINAL = {"delivered", "undelivered", "failed", "suppressed"}

# Send classes: replies answer the customer's own message (no quiet hours, opt-out does not
# apply, "reply" budget); proactive are notifications; system are the opt-out/opt-in
# confirmations, which go whatever the opt-out state (they share the "reply" budget, so toggling
# TD/订阅 in a loop cannot make us send without limit; a held confirmation waits, it is not lost).
REPLY, PROACTIVE, SYSTEM = "reply", "proactive", "system"


def _msg_key(msg_id: str) -> str:
    return f"pd:sms:msg:{msg_id}"


def _pid_key(provider: str, provider_id: str, phone: str) -> str:
    return f"pd:sms:pid:{provider}:{provider_id}:{phone}"


def _pending_key(provider: str, provider_id: str, phone: str) -> str:
    return f"pd:sms:report-pending:{provider}:{provider_id}:{phone}"


@dataclass(frozen=True)
class DeliveryReport:
    """A provider's status report for one number, normalised."""

    provider_id: str
    phone: str
    delivered: bool
    code: str
    reported_at: str   # provider's time string, "YYYY-MM-DD HH:MM:SS" (sortable)


class Outbox:
    """Queues, sends, retries and tracks SMS (see the module docstring)."""

    def __init__(self, redis, sender: SmsSender, quiet: QuietHours, limiter: RateLimiter,
                 optouts: OptOutStore, max_attempts: int = 5,
                 clock: Callable[[], float] = time.time, queue_key: str = QUEUE_KEY) -> None:
        self.redis = redis
        self.sender = sender
        self.quiet = quiet
        self.limiter = limiter
        self.optouts = optouts
        self.max_attempts = max_attempts
        self.clock = clock
        self.queue_key = queue_key

    @property
    def provider(self) -> str:
        return self.sender.name

    async def submit(self, phone: str, sms: OutgoingSms, send_class: str = REPLY,
                     urgent: bool = False, conversation_id: str = "") -> str:
        """Store ``sms`` to ``phone`` and try to send it now; returns the message id."""
        msg_id = uuid.uuid4().hex
        now = self.clock()
        await self.redis.hset(_msg_key(msg_id), mapping={
            "id": msg_id, "phone": phone, "kind": sms.kind, "template_id": sms.template_id,
            "params": json.dumps(sms.params, ensure_ascii=False), "text": sms.text,
            "segments": sms.segments, "class": send_class, "urgent": int(urgent),
            "conversation_id": conversation_id, "state": "queued", "attempts": 0,
            "created_at": now, "updated_at": now,
        })
        await self.redis.expire(_msg_key(msg_id), MSG_TTL)
        await self.process(msg_id)
        return msg_id

    async def get(self, msg_id: str) -> dict[str, str]:
        """The stored message (empty dict when unknown)."""
        return await self.redis.hgetall(_msg_key(msg_id))

    async def _update(self, msg_id: str, **fields: Any) -> None:
        fields["updated_at"] = self.clock()
        await self.redis.hset(_msg_key(msg_id), mapping={k: v for k, v in fields.items()})

    async def _defer(self, msg: dict[str, str], when: float, reason: str) -> None:
        await self._update(msg["id"], state="queued", not_before=when, waiting_for=reason)
        await self.redis.zadd(self.queue_key, {msg["id"]: when})
        log.info("sms %s to %s queued until %s: %s", msg["id"], mask(msg["phone"]),
                 datetime.fromtimestamp(when, self.quiet.tz).strftime("%Y-%m-%d %H:%M:%S"), reason)

    async def _finish(self, msg: dict[str, str], state: str, **fields: Any) -> None:
        await self._update(msg["id"], state=state, **fields)
        await self.redis.zrem(self.queue_key, msg["id"])

    async def process(self, msg_id: str) -> str:
        """Apply the rules to one queued message and attempt it; returns its new state."""
        msg = await self.get(msg_id)
        if not msg or msg.get("state") != "queued":
            return msg.get("state", "")
        held = await self._gate(msg)
        if held:
            return held
        (result,) = await self.sender.send_many([self._request(msg)])
        return await self._record(msg, result)

    async def submit_many(self, phones: list[str], sms: OutgoingSms,
                          send_class: str = PROACTIVE, urgent: bool = False) -> list[str]:
        """One SMS to many numbers (a broadcast): every number gets its own message and rules;
        those allowed now go out together (Aliyun SendBatchSms, Tencent one SendSms for up to
        200 numbers). Returns the message ids in the order of ``phones``."""
        now = self.clock()
        ids, ready = [], []
        for phone in phones:
            msg_id = uuid.uuid4().hex
            msg = {"id": msg_id, "phone": phone, "kind": sms.kind, "template_id": sms.template_id,
                   "params": json.dumps(sms.params, ensure_ascii=False), "text": sms.text,
                   "segments": str(sms.segments), "class": send_class, "urgent": str(int(urgent)),
                   "conversation_id": f"sms:{phone}", "state": "queued", "attempts": "0",
                   "created_at": str(now), "updated_at": str(now)}
            await self.redis.hset(_msg_key(msg_id), mapping=msg)
            await self.redis.expire(_msg_key(msg_id), MSG_TTL)
            ids.append(msg_id)
            if not await self._gate(msg):
                ready.append(msg)
        if ready:
            results = await self.sender.send_many([self._request(m) for m in ready])
            for msg, result in zip(ready, results):
                await self._record(msg, result)
        return ids

    @staticmethod
    def _request(msg: dict[str, str]) -> SmsRequest:
        return SmsRequest(msg["phone"], msg["template_id"], json.loads(msg["params"]),
                          out_id=msg["id"])

    async def _gate(self, msg: dict[str, str]) -> str | None:
        """The rules before an attempt: None when the message may go now, else its new state."""
        msg_id, phone, send_class = msg["id"], msg["phone"], msg["class"]
        now = self.clock()
        if now - float(msg["created_at"]) > MAX_AGE:
            await self._finish(msg, "failed", error_code="expired")
            log.warning("sms %s to %s given up after a day in the queue", msg_id, mask(phone))
            return "failed"
        if send_class == PROACTIVE and await self.optouts.is_opted_out(phone):
            await self._finish(msg, "suppressed", error_code="opted_out")
            metrics.HELD.labels("suppressed_optout").inc()
            log.info("sms %s to %s suppressed: number opted out", msg_id, mask(phone))
            return "suppressed"
        # A reply held back for a while (rate limit, provider trouble) is no longer part of a
        # live exchange: at night it waits for the morning like a notification.
        stale_reply = send_class != PROACTIVE and now - float(msg["created_at"]) > STALE_REPLY
        if (send_class == PROACTIVE or stale_reply) and msg.get("urgent") != "1" \
                and self.quiet.is_quiet(now):
            await self._defer(msg, self.quiet.next_allowed(now), "quiet hours")
            metrics.HELD.labels("quiet_hours").inc()
            return "queued"
        budget = "proactive" if send_class == PROACTIVE else "reply"
        decision = await self.limiter.take(budget, phone, now)
        if not decision.allowed:
            await self._defer(msg, now + decision.retry_after,
                              f"{budget} rate limit for this number reached")
            metrics.HELD.labels("rate_limit").inc()
            return "queued"
        return None

    async def _record(self, msg: dict[str, str], result: SendResult) -> str:
        """Apply the provider's answer to one attempt; returns the message's new state."""
        msg_id, phone = msg["id"], msg["phone"]
        now = self.clock()
        attempts = int(msg.get("attempts", 0)) + 1
        # Flow control is not a failure: only transient errors use up the retry budget.
        failures = int(msg.get("failures", 0)) + (result.outcome is Outcome.RETRY)
        await self._update(msg_id, attempts=attempts, failures=failures, last_code=result.code)
        metrics.ATTEMPTS.labels(self.provider, result.outcome.value).inc()
        if result.outcome is Outcome.SENT:
            await self._finish(msg, "sent", provider_id=result.provider_id, sent_at=now)
            metrics.SEGMENTS.labels(self.provider, msg["kind"]).inc(int(msg.get("segments") or 1))
            await self.redis.incrby(
                f"pd:sms:segments:{datetime.fromtimestamp(now, self.quiet.tz):%Y%m%d}",
                int(msg.get("segments") or 1))
            if result.provider_id:
                pid = _pid_key(self.provider, result.provider_id, phone)
                await self.redis.set(pid, msg_id, ex=REPORT_TTL)
                parked = await self.redis.getdel(_pending_key(self.provider,
                                                              result.provider_id, phone))
                if parked:
                    await self._apply_report(msg_id, DeliveryReport(**json.loads(parked)))
            return "sent"
        if result.outcome is Outcome.THROTTLED:
            await self._defer(msg, now + (result.retry_after or 60),
                              f"provider flow control {result.code}")
            return "queued"
        if result.outcome is Outcome.RETRY and failures < self.max_attempts:
            await self._defer(msg, now + min(5 * 2 ** failures, 900),
                              f"transient failure {result.code} (attempt {attempts})")
            return "queued"
        await self._finish(msg, "failed", error_code=result.code,
                           error_message=result.message[:200])
        log.warning("sms %s to %s failed for good: %s %s", msg_id, mask(phone), result.code,
                    result.message)
        return "failed"

    async def run_due(self, limit: int = 100) -> int:
        """Attempt the messages whose time has come; returns how many this instance took."""
        now = self.clock()
        ids = await self.redis.zrangebyscore(self.queue_key, "-inf", now, start=0, num=limit)
        taken = 0
        for msg_id in ids:
            if await self.redis.zrem(self.queue_key, msg_id):  # only one instance wins each message
                taken += 1
                try:
                    await self.process(msg_id)
                except Exception:  # noqa: BLE001 - one bad message must not stop the queue
                    log.exception("sms %s: processing failed; retried in a minute", msg_id)
                    await self.redis.zadd(self.queue_key, {msg_id: now + 60})
        return taken

    async def run_forever(self, interval: float = 1.0) -> None:
        """The worker loop of one gateway instance."""
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis blips must not kill the worker
                log.exception("sms outbox worker: pass failed")
            await asyncio.sleep(interval)

    async def record_report(self, report: DeliveryReport, provider: str | None = None) -> str:
        """Apply a delivery report of ``provider`` (default: the sending one); returns "applied",
        "parked" (send not recorded yet), "stale" (older than what we have) or "duplicate"."""
        provider = provider or self.provider
        msg_id = await self.redis.get(_pid_key(provider, report.provider_id, report.phone))
        if not msg_id:
            await self.redis.set(_pending_key(provider, report.provider_id, report.phone),
                                 json.dumps(report.__dict__), ex=REPORT_TTL)
            return "parked"
        return await self._apply_report(msg_id, report)

    async def _apply_report(self, msg_id: str, report: DeliveryReport) -> str:
        msg = await self.get(msg_id)
        if not msg:
            return "stale"
        previous = msg.get("reported_at", "")
        if previous and report.reported_at < previous:
            return "stale"
        state = "delivered" if report.delivered else "undelivered"
        if previous == report.reported_at and msg.get("state") == state:
            return "duplicate"
        await self._update(msg_id, state=state, reported_at=report.reported_at,
                           report_code=report.code)
        if not report.delivered:
            log.warning("sms %s to %s not delivered: %s", msg_id, mask(report.phone), report.code)
        return "applied"
