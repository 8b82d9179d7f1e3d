"""The SMS outbox: every SMS goes through it; what cannot go now waits in Redis, never dropped.

Each message is a Redis hash ``pd:{sms}:msg:<id>`` (state, phone, template, params, attempts,
provider id, billed segments, error). Every message that is not final has an entry in the sorted
set ``pd:{sms}:outbox`` scored by the unix time it may be taken: when it may go (quiet hours, a
rate limit, provider flow control, a retry) or, while some worker holds it, when that worker's
lease runs out. The hash and its entry are written in one transaction before any attempt.

Leases: a worker takes a due message by re-scoring its entry to now + ``lease_seconds`` (one Lua
script, so one worker wins); ``submit`` leases the messages it writes the same way. Only the
recorded outcome moves the entry: sent, failed or suppressed remove it, a deferral re-scores it,
in the same transaction as the new state. A worker that crashes or is cancelled (a deploy)
leaves its entry behind, and any instance takes the message again once the lease has run out.
On shutdown the gateway first lets the worker finish the message in hand (``stop``).

Providers have no idempotency key, so a message whose provider call succeeded but whose result
was not recorded would be sent again after its lease. That window is one provider answer plus
one Redis transaction: an ``sending_since`` mark is set just before the call, the outcome is
recorded (shielded from cancellation) right after it, and a message taken again with the mark
still set is logged and counted (``powerdesk_sms_unknown_outcome_total``) and *reconciled*
before anything is resent: a message sent alone carries a reference (Aliyun ``OutId``, Tencent
``SessionContext``: the message id, for a keyed notice a digest of key and number, so the
provider never sees the key, which names the customer's account), and the provider's query API
(Aliyun QuerySendDetails, Tencent PullSmsSendStatusByPhoneNumber) is asked whether it accepted
it. Found: recorded as sent (with its status report when there is one), never resent. Not found:
resent at once where the query lists every accepted message (Aliyun); where it lists a message
only after its status report (Tencent), resent only once ``reconcile_grace_seconds`` (default
300) have passed since the lost attempt without a report. The query failing: asked again a
minute later. Messages sent together in one provider call (``submit_many``,
``submit_keyed_many``: Aliyun SendBatchSms, Tencent SendSms with several numbers) share one
batch reference (stored as the message's ``ref``; OutId / SessionContext are per call), which
the query lists with each number, so they are reconciled the same way. A worker still busy when
its lease runs out could also cause a second attempt, so the lease (default 60 s) is many times
the provider timeout; ``submit_many`` leaves what it cannot send within half its lease to the
workers.

Keyed messages (``submit(..., key=…)``, a broadcast notice's idempotency key): the message id is
derived from the key and the number, and the message is stored only if it does not exist yet,
so a second submit of the same key finds the first one and answers from its state (taking it
over first when its lease ran out, reconciling as above); nothing is sent twice.
``submit_keyed_many`` does the same for a broadcast's batch: the new messages are stored, gated
(opt-outs in one read, the numbers' budgets in one pipeline), sent in as few provider calls as
the template allows and recorded in one transaction; a key that exists already goes the
single-message way. Provider flow
control of a keyed message is not waited out here: the message is parked as ``throttled`` (out
of the queue) and the caller (the broadcast engine) decides when to submit the key again.
Status reports of keyed messages are appended to ``pd:notice:reports``
(:mod:`channels.notice_reports`).

Rules, in order, before each attempt:
- a message past its deadline (a day; a verification code: its validity) is given up;
- proactive messages to a number that opted out are suppressed (recorded, not sent);
- non-urgent proactive messages wait out quiet hours;
- the number's budget (``proactive`` or ``reply``) must allow one more message, else the
  message waits until the window rolls over (logged);
then the provider's answer decides: sent; throttled → later; transient → exponential backoff
up to ``max_attempts``; permanent → failed with the provider's code. Delivery reports move a sent
message to ``delivered`` / ``undelivered``; a report that arrives before the send result was
recorded is parked and applied when it is.

Redis Cluster: every key of the outbox carries the hash tag ``{sms}`` (messages, the queue,
provider ids, references, parked reports, the daily segment counters), so its scripts and
transactions run on one slot: the outbox is one queue. :func:`migrate_legacy_keys` moves the keys
of the names before the tag (``pd:sms:msg:<id>``, ``pd:sms:outbox``, ...) once, at start.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from dataclasses import dataclass
from typing import Any

from channels.key_migration import merge_sorted_set, move_keys, once
from channels.notice_reports import append_report
from channels.optout import OptOutStore
from channels.redis_scripts import queue_script
from channels.sms import metrics
from channels.sms.phones import mask
from channels.sms.providers.base import Outcome, SendResult, SentRecord, SmsRequest, SmsSender
from channels.sms.quiet_hours import QuietHours
from channels.sms.ratelimit import RateLimiter
from channels.sms.templates import OutgoingSms

log = logging.getLogger("channels.sms.outbox")

PREFIX = "pd:{sms}:"      # one hash tag for every key of the outbox (Redis Cluster)
QUEUE_KEY = PREFIX + "outbox"
LEGACY_PREFIX = "pd:sms:"  # the names before the tag; the rate limits and the dispatcher stay there
LEGACY_FAMILIES = ("msg:", "pid:", "report-pending:", "report-pending-ref:", "ref:", "segments:")
MSG_TTL = 7 * 86400
REPORT_TTL = 3 * 86400
MAX_AGE = 86400          # a message still not sent after a day is given up (recorded)
STALE_REPLY = 600        # a reply still waiting after 10 minutes respects quiet hours
MIN_LEASE = 60.0         # seconds a taken message stays with its worker (at least)
RETRY_AFTER_ERROR = 60   # seconds before a message whose processing raised is tried again
RECONCILE_RETRY = 60     # seconds before a failed provider query is asked again
RECONCILE_GRACE = 300.0  # Tencent: how long a lost attempt may wait for its status report
FINAL = {"delivered", "undelivered", "failed", "suppressed"}
THROTTLED = "throttled"  # a keyed message refused by provider flow control, left to the caller

# Send classes: replies answer the customer's own message (no quiet hours, opt-out does not
# apply, "reply" budget); proactive are notifications; system are the opt-out/opt-in
# confirmations and verification codes, which the customer asked for: they go whatever the
# opt-out state and at any hour (they share the "reply" budget, so toggling TD/订阅 in a loop
# cannot make us send without limit; a held one waits, it is not lost, until it expires).
REPLY, PROACTIVE, SYSTEM = "reply", "proactive", "system"

# KEYS[1]: the queue. ARGV: now, lease deadline. Takes the first due message (re-scored to the
# lease deadline) and returns its id, or nothing.
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then return false end
redis.call('ZADD', KEYS[1], ARGV[2], due[1])
return due[1]
"""

# KEYS[1]: the message hash, KEYS[2]: the queue. ARGV: lease deadline, id, then field/value
# pairs. Stores a keyed message, leased to the caller, only if it does not exist yet.
_STORE_NEW = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], %d)
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
""" % MSG_TTL

# KEYS[1]: the message hash, KEYS[2]: the queue. ARGV: now, lease deadline, id. Takes the
# message for the caller when nobody holds it: queued and due, or parked as throttled.
_TAKE_ONE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'throttled' then
  redis.call('HSET', KEYS[1], 'state', 'queued')
elseif state == 'queued' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
  if score and tonumber(score) > tonumber(ARGV[1]) then return 0 end
else
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


def _msg_key(msg_id: str) -> str:
    return f"{PREFIX}msg:{msg_id}"


def keyed_id(key: str, phone: str) -> str:
    """The message id of the notice ``key`` to ``phone`` (the same on every submit)."""
    return "k" + hashlib.sha256(f"{key}\n{phone}".encode()).hexdigest()[:31]


def _pid_key(provider: str, provider_id: str, phone: str) -> str:
    return f"{PREFIX}pid:{provider}:{provider_id}:{phone}"


def _pending_key(provider: str, provider_id: str, phone: str) -> str:
    return f"{PREFIX}report-pending:{provider}:{provider_id}:{phone}"


def _ref_key(provider: str, ref: str, phone: str) -> str:
    """The message sent to ``phone`` in a batch with reference ``ref``, once recorded by
    reconciliation (which may not learn the provider's id)."""
    return f"{PREFIX}ref:{provider}:{ref}:{phone}"


def _pending_ref_key(provider: str, out_id: str, phone: str) -> str:
    """A parked report by the message's reference (for a message recorded by reconciliation,
    which may not learn the provider's id)."""
    return f"{PREFIX}report-pending-ref:{provider}:{out_id}:{phone}"


def segments_key(day: str) -> str:
    """The count of SMS segments billed on ``day`` (``YYYYMMDD``, local time)."""
    return f"{PREFIX}segments:{day}"


async def migrate_legacy_keys(redis, queue_key: str = QUEUE_KEY) -> int:
    """Move the outbox's keys from their names before the ``{sms}`` tag (messages first, then
    the queue's entries, so an entry always finds its message); once a start finds nothing left,
    later starts skip the scan (:func:`channels.key_migration.once`). Returns how many moved."""
    async def migrate() -> int:
        moved = await move_keys(redis, LEGACY_PREFIX, PREFIX, families=LEGACY_FAMILIES)
        return moved + await merge_sorted_set(redis, LEGACY_PREFIX + "outbox", queue_key)
    return await once(redis, f"sms-outbox:{queue_key}", migrate)


@dataclass(frozen=True)
class DeliveryReport:
    """A provider's status report for one number, normalised."""

    provider_id: str
    phone: str
    delivered: bool
    code: str
    reported_at: str   # provider's time string, "YYYY-MM-DD HH:MM:SS" (sortable)
    out_id: str = ""   # the reference sent with the message (Aliyun OutId), when reported


class Outbox:
    """Queues, sends, retries and tracks SMS (see the module docstring)."""

    def __init__(self, redis, sender: SmsSender, quiet: QuietHours, limiter: RateLimiter,
                 optouts: OptOutStore, max_attempts: int = 5,
                 clock: Callable[[], float] = time.time, queue_key: str = QUEUE_KEY,
                 lease_seconds: float | None = None,
                 reconcile_grace_seconds: float = RECONCILE_GRACE) -> None:
        self.redis = redis
        self.sender = sender
        self.quiet = quiet
        self.limiter = limiter
        self.optouts = optouts
        self.max_attempts = max_attempts
        self.clock = clock
        self.queue_key = queue_key
        self.lease_seconds = lease_seconds or max(MIN_LEASE, 6 * sender.timeout_s)
        self.reconcile_grace_seconds = reconcile_grace_seconds
        self._take_due = redis.register_script(_TAKE_DUE)
        self._store_new = redis.register_script(_STORE_NEW)
        self._take_one = redis.register_script(_TAKE_ONE)
        self._stopping = asyncio.Event()

    @property
    def provider(self) -> str:
        return self.sender.name

    def _segments_key(self, now: float) -> str:
        return segments_key(f"{datetime.fromtimestamp(now, self.quiet.tz):%Y%m%d}")

    def _new_message(self, phone: str, sms: OutgoingSms, send_class: str, urgent: bool,
                     conversation_id: str, now: float,
                     expires_in: float | None = None, key: str = "") -> dict[str, str]:
        expires_in = sms.expires_in if expires_in is None else expires_in
        return {"id": keyed_id(key, phone) if key else uuid.uuid4().hex, "key": key,
                "phone": phone, "kind": sms.kind,
                "template_id": sms.template_id,
                "params": json.dumps(sms.params, ensure_ascii=False), "text": sms.text,
                "segments": str(sms.segments), "class": send_class, "urgent": str(int(urgent)),
                "conversation_id": conversation_id, "state": "queued", "attempts": "0",
                "created_at": str(now), "updated_at": str(now),
                "expires_at": str(now + (MAX_AGE if expires_in is None else expires_in))}

    async def _store_leased(self, messages: list[dict[str, str]], lease_until: float) -> None:
        """Write the messages and their queue entries, leased to the caller, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for msg in messages:
                pipe.hset(_msg_key(msg["id"]), mapping=msg)
                pipe.expire(_msg_key(msg["id"]), MSG_TTL)
            pipe.zadd(self.queue_key, {msg["id"]: lease_until for msg in messages})
            await pipe.execute()

    async def submit(self, phone: str, sms: OutgoingSms, send_class: str = REPLY,
                     urgent: bool = False, conversation_id: str = "",
                     expires_in: float | None = None, key: str = "") -> str:
        """Store ``sms`` to ``phone`` and try to send it now; returns the message id.
        ``expires_in``: seconds after which it is given up rather than sent (default: the
        SMS's own, e.g. a verification code's validity, else a day). With ``key`` (an
        idempotency key) a message of that key to that number is stored once: a second submit
        returns the first one's id, after taking it over if nobody holds it (module doc)."""
        now = self.clock()
        msg = self._new_message(phone, sms, send_class, urgent, conversation_id, now, expires_in,
                                key)
        if not key:
            await self._store_leased([msg], now + self.lease_seconds)
        elif not await self._store_new(keys=[_msg_key(msg["id"]), self.queue_key],
                                       args=self._store_new_args(msg, now)):
            await self._submitted_again(msg, now)
            return msg["id"]
        await self._attempt([msg])
        return msg["id"]

    def _store_new_args(self, msg: dict[str, str], now: float) -> list[Any]:
        return [now + self.lease_seconds, msg["id"], *[x for pair in msg.items() for x in pair]]

    async def _submitted_again(self, msg: dict[str, str], now: float) -> None:
        """A keyed message that exists already: taken over and processed when nobody holds it."""
        if await self._take_one(keys=[_msg_key(msg["id"]), self.queue_key],
                                args=[now, now + self.lease_seconds, msg["id"]]):
            log.info("sms %s to %s: submitted again, taken over", msg["id"], mask(msg["phone"]))
            await self.process(msg["id"])

    async def submit_keyed_many(self, items: list[tuple[str, OutgoingSms, str, bool]]) -> list[str]:
        """Proactive keyed messages (phone, sms, key, urgent), e.g. a broadcast's batch: like
        ``submit`` with a key for each, with the batch's Redis work pipelined and those allowed
        now sent together (module doc). Returns each message's state in order (``sent``, or
        another state to read with :meth:`get`)."""
        now = self.clock()
        messages = [self._new_message(phone, sms, PROACTIVE, urgent, f"sms:{phone}", now, key=key)
                    for phone, sms, key, urgent in items]
        if not messages:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for msg in messages:
                await queue_script(pipe, self._store_new, [_msg_key(msg["id"]), self.queue_key],
                                   self._store_new_args(msg, now))
            stored = await pipe.execute()
        fresh, ids = [], set()
        for msg, new in zip(messages, stored):
            if new and msg["id"] not in ids:  # the same key and number twice: stored once
                fresh.append(msg)
                ids.add(msg["id"])
        states = dict(zip((m["id"] for m in fresh), await self._attempt(fresh))) if fresh else {}
        out = []
        for msg in messages:
            if msg["id"] not in states:
                await self._submitted_again(msg, now)
                states[msg["id"]] = (await self.get(msg["id"])).get("state", "")
            out.append(states[msg["id"]])
        return out

    async def submit_many(self, phones: list[str], sms: OutgoingSms,
                          send_class: str = PROACTIVE, urgent: bool = False) -> list[str]:
        """One SMS to many numbers (a broadcast): every number gets its own message and rules;
        those allowed now go out together (Aliyun SendBatchSms, Tencent one SendSms for up to
        200 numbers). All are stored before the first attempt; what this call cannot send within
        half its lease is left to the workers. Returns the message ids in the order of ``phones``."""
        now = self.clock()
        lease_until = now + self.lease_seconds
        messages = [self._new_message(phone, sms, send_class, urgent, f"sms:{phone}", now)
                    for phone in phones]
        if not messages:
            return []
        await self._store_leased(messages, lease_until)
        batch = self.sender.max_batch
        for start in range(0, len(messages), batch):
            if self.clock() > lease_until - self.lease_seconds / 2:
                rest = messages[start:]
                await self.redis.zadd(self.queue_key, {m["id"]: self.clock() for m in rest})
                log.info("sms broadcast: %d messages left to the outbox workers", len(rest))
                break
            await self._attempt(messages[start:start + batch])
        return [m["id"] for m in messages]

    async def get(self, msg_id: str) -> dict[str, str]:
        """The stored message (empty dict when unknown)."""
        return await self.redis.hgetall(_msg_key(msg_id))

    async def _update(self, msg_id: str, **fields: Any) -> None:
        fields["updated_at"] = self.clock()
        await self.redis.hset(_msg_key(msg_id), mapping=fields)

    def _set_state(self, pipe, msg_id: str, fields: dict[str, Any]) -> None:
        pipe.hset(_msg_key(msg_id), mapping={**fields, "updated_at": self.clock()})
        pipe.hdel(_msg_key(msg_id), "sending_since")

    async def _defer(self, msg: dict[str, str], when: float, reason: str,
                     keep_mark: bool = False, **fields: Any) -> None:
        """Queue ``msg`` again until ``when``; ``keep_mark``: its last attempt's outcome is still
        unknown (the ``sending_since`` mark stays)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            state = {**fields, "state": "queued", "not_before": when, "waiting_for": reason}
            if keep_mark:
                pipe.hset(_msg_key(msg["id"]), mapping={**state, "updated_at": self.clock()})
            else:
                self._set_state(pipe, msg["id"], state)
            pipe.zadd(self.queue_key, {msg["id"]: when})
            await pipe.execute()
        log.info("sms %s to %s queued until %s: %s", msg["id"], mask(msg["phone"]),
                 datetime.fromtimestamp(when, self.quiet.tz).strftime("%Y-%m-%d %H:%M:%S"), reason)

    async def _finish(self, msg: dict[str, str], state: str, **fields: Any) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            self._set_state(pipe, msg["id"], {**fields, "state": state})
            pipe.zrem(self.queue_key, msg["id"])
            await pipe.execute()

    async def process(self, msg_id: str) -> str:
        """Apply the rules to one queued message and attempt it; returns its new state. The
        caller holds the message's lease."""
        msg = await self.get(msg_id)
        if not msg or msg.get("state") != "queued":
            await self.redis.zrem(self.queue_key, msg_id)  # nothing left to do: a stray entry
            return msg.get("state", "")
        if msg.get("sending_since"):
            metrics.UNKNOWN_OUTCOME.inc()
            settled = await self._reconcile(msg)
            if settled:
                return settled
        return (await self._attempt([msg]))[0]

    async def _reconcile(self, msg: dict[str, str]) -> str | None:
        """The last attempt of ``msg`` has no recorded outcome: ask the provider (module doc).
        Returns the message's new state, or None when it is to be sent again now."""
        msg_id, phone = msg["id"], msg["phone"]
        since = float(msg["sending_since"])
        if msg.get("ref_sent") != "1":
            log.warning("sms %s to %s: the attempt started at %s has no recorded result and "
                        "carried no reference to ask the provider about; sending again, the "
                        "customer may get it twice", msg_id, mask(phone), msg["sending_since"])
            return None
        lookup = await self.sender.lookup(phone, msg.get("ref") or msg_id, since)
        now = self.clock()
        if not lookup.ok:
            await self._defer(msg, now + RECONCILE_RETRY, "unknown outcome: provider query failed",
                              keep_mark=True)
            return "queued"
        if lookup.record is not None:
            log.info("sms %s to %s: the provider had accepted the lost attempt; not resent",
                     msg_id, mask(phone))
            metrics.RECONCILED.labels(self.provider, "found").inc()
            return await self._record_found(msg, lookup.record)
        if not self.sender.lookup_is_conclusive and now - since < self.reconcile_grace_seconds:
            await self._defer(msg, since + self.reconcile_grace_seconds,
                              "unknown outcome: waiting for the provider's status report",
                              keep_mark=True)
            return "queued"
        metrics.RECONCILED.labels(self.provider, "not_found").inc()
        log.warning("sms %s to %s: the provider never accepted the lost attempt; sending again",
                    msg_id, mask(phone))
        return None

    async def _record_found(self, msg: dict[str, str], record: SentRecord) -> str:
        state = await self._record(msg, SendResult(msg["phone"], Outcome.SENT, "reconciled",
                                                   "found by the provider's query API",
                                                   provider_id=record.provider_id))
        ref = msg.get("ref") or msg["id"]
        if record.state == "pending" and not record.provider_id:
            if ref != msg["id"]:  # a batch's reference: its later report must find the message
                await self.redis.set(_ref_key(self.provider, ref, msg["phone"]), msg["id"],
                                     ex=REPORT_TTL)
            # Its report may have come while the outcome was unknown: parked by reference.
            parked = await self.redis.getdel(_pending_ref_key(self.provider, ref, msg["phone"]))
            if parked:
                report = DeliveryReport(**json.loads(parked))
                await self.redis.set(_pid_key(self.provider, report.provider_id, msg["phone"]),
                                     msg["id"], ex=REPORT_TTL)
                await self._apply_report(msg["id"], report)
        if record.state != "pending":
            await self._apply_report(msg["id"], DeliveryReport(
                record.provider_id, msg["phone"], record.state == "delivered", record.code,
                record.reported_at or datetime.fromtimestamp(self.clock(), self.quiet.tz)
                .strftime("%Y-%m-%d %H:%M:%S")))
        return state

    async def _attempt(self, messages: list[dict[str, str]]) -> list[str]:
        """Gate each message, send those allowed now in as few provider calls as possible,
        record each outcome; returns the new states in order."""
        held = await self._gate_many(messages)
        ready = [msg for msg, state in zip(messages, held) if not state]
        if ready:
            # The reference (OutId / SessionContext) by which the provider's query API finds
            # what it accepted if this attempt's outcome is lost: the message id when it goes
            # alone, else one reference for the batch (each number is listed with it).
            ref = ready[0]["id"] if len(ready) == 1 else "b" + uuid.uuid4().hex[:31]
            async with self.redis.pipeline(transaction=False) as pipe:
                for msg in ready:
                    msg["ref"] = ref
                    pipe.hset(_msg_key(msg["id"]), mapping={"sending_since": self.clock(),
                                                            "ref_sent": "1", "ref": ref})
                await pipe.execute()
            results = await self.sender.send_many([self._request(m, ref) for m in ready])
            # Recorded even if this task is cancelled now: the provider has answered, and an
            # unrecorded success would be sent again after the lease.
            recorded = iter(await asyncio.shield(self._record_all(ready, results)))
            return [state or next(recorded) for state in held]
        return list(held)

    async def _record_all(self, messages: list[dict[str, str]],
                          results: list[SendResult]) -> list[str]:
        """Record every outcome: the accepted ones in one transaction, the others one by one."""
        states: list[str | None] = [None] * len(messages)
        sent = [(i, msg, result) for i, (msg, result) in enumerate(zip(messages, results))
                if result.outcome is Outcome.SENT]
        if len(sent) > 1:
            await self._record_sent([(msg, result) for _i, msg, result in sent])
            for i, _msg, _result in sent:
                states[i] = "sent"
        for i, (msg, result) in enumerate(zip(messages, results)):
            if states[i] is None:
                states[i] = await self._record(msg, result)
        return states  # type: ignore[return-value]

    async def _record_sent(self, accepted: list[tuple[dict[str, str], SendResult]]) -> None:
        """``_record`` of many accepted messages: one transaction, one read of parked reports."""
        now = self.clock()
        segments = 0
        async with self.redis.pipeline(transaction=True) as pipe:
            for msg, result in accepted:
                metrics.ATTEMPTS.labels(self.provider, result.outcome.value).inc()
                self._set_state(pipe, msg["id"], {
                    "attempts": int(msg.get("attempts", 0)) + 1,
                    "failures": int(msg.get("failures", 0)), "last_code": result.code,
                    "state": "sent", "sent_at": now, "provider_id": result.provider_id})
                pipe.zrem(self.queue_key, msg["id"])
                if result.provider_id:
                    pipe.set(_pid_key(self.provider, result.provider_id, msg["phone"]), msg["id"],
                             ex=REPORT_TTL)
                count = int(msg.get("segments") or 1)
                segments += count
                metrics.SEGMENTS.labels(self.provider, msg["kind"]).inc(count)
            pipe.incrby(self._segments_key(now), segments)
            await pipe.execute()
        with_id = [(msg, result) for msg, result in accepted if result.provider_id]
        if not with_id:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for msg, result in with_id:
                pipe.getdel(_pending_key(self.provider, result.provider_id, msg["phone"]))
            parked = await pipe.execute()
        for (msg, _result), report in zip(with_id, parked):
            if report:
                await self._apply_report(msg["id"], DeliveryReport(**json.loads(report)))

    @staticmethod
    def _request(msg: dict[str, str], ref: str = "") -> SmsRequest:
        return SmsRequest(msg["phone"], msg["template_id"], json.loads(msg["params"]),
                          out_id=ref or msg["id"])

    async def _gate_many(self, messages: list[dict[str, str]]) -> list[str | None]:
        """:meth:`_gate` of each message, the batch's Redis reads and takes pipelined."""
        if len(messages) == 1:
            return [await self._gate(messages[0])]
        states: list[str | None] = [None] * len(messages)
        now = self.clock()
        proactive = [f"sms:{m['phone']}" for m in messages if m["class"] == PROACTIVE]
        opted = await self.optouts.opted_out_among(proactive) if proactive else set()
        taking: list[int] = []
        for i, msg in enumerate(messages):
            if now > float(msg.get("expires_at") or float(msg["created_at"]) + MAX_AGE) \
                    or (msg["class"] == PROACTIVE and f"sms:{msg['phone']}" in opted) \
                    or self._quiet_for(msg, now):
                states[i] = await self._gate(msg)  # held: recorded one by one (rare)
            else:
                taking.append(i)
        decisions = await self.limiter.take_many(
            [("proactive" if messages[i]["class"] == PROACTIVE else "reply", messages[i]["phone"])
             for i in taking], now)
        for i, decision in zip(taking, decisions):
            if not decision.allowed:
                states[i] = await self._held_by_budget(messages[i], now, decision.retry_after)
        return states

    def _quiet_for(self, msg: dict[str, str], now: float) -> bool:
        """Whether quiet hours hold ``msg`` now (see :meth:`_gate`)."""
        stale_reply = msg["class"] == REPLY and now - float(msg["created_at"]) > STALE_REPLY
        return (msg["class"] == PROACTIVE or stale_reply) and msg.get("urgent") != "1" \
            and self.quiet.is_quiet(now)

    async def _held_by_budget(self, msg: dict[str, str], now: float, retry_after: float) -> str:
        budget = "proactive" if msg["class"] == PROACTIVE else "reply"
        await self._defer(msg, now + retry_after, f"{budget} rate limit for this number reached")
        metrics.HELD.labels("rate_limit").inc()
        return "queued"

    async def _gate(self, msg: dict[str, str]) -> str | None:
        """The rules before an attempt: None when the message may go now, else its new state."""
        msg_id, phone, send_class = msg["id"], msg["phone"], msg["class"]
        now = self.clock()
        created = float(msg["created_at"])
        if now > float(msg.get("expires_at") or created + MAX_AGE):
            await self._finish(msg, "failed", error_code="expired")
            log.warning("sms %s to %s given up: not sent before it expired", msg_id, mask(phone))
            return "failed"
        if send_class == PROACTIVE and await self.optouts.is_opted_out(f"sms:{phone}"):
            await self._finish(msg, "suppressed", error_code="opted_out")
            metrics.HELD.labels("suppressed_optout").inc()
            log.info("sms %s to %s suppressed: number opted out", msg_id, mask(phone))
            return "suppressed"
        # A reply held back for a while (rate limit, provider trouble) is no longer part of a
        # live exchange: at night it waits for the morning like a notification. System messages
        # (confirmations, codes) were asked for by the customer: never held for quiet hours.
        if self._quiet_for(msg, now):
            await self._defer(msg, self.quiet.next_allowed(now), "quiet hours")
            metrics.HELD.labels("quiet_hours").inc()
            return "queued"
        budget = "proactive" if send_class == PROACTIVE else "reply"
        decision = await self.limiter.take(budget, phone, now)
        if not decision.allowed:
            return await self._held_by_budget(msg, now, decision.retry_after)
        return None

    async def _record(self, msg: dict[str, str], result: SendResult) -> str:
        """Apply the provider's answer to one attempt; returns the message's new state."""
        msg_id, phone = msg["id"], msg["phone"]
        now = self.clock()
        attempts = int(msg.get("attempts", 0)) + 1
        # Flow control is not a failure: only transient errors use up the retry budget.
        failures = int(msg.get("failures", 0)) + (result.outcome is Outcome.RETRY)
        counts = {"attempts": attempts, "failures": failures, "last_code": result.code}
        metrics.ATTEMPTS.labels(self.provider, result.outcome.value).inc()
        if result.outcome is Outcome.SENT:
            segments = int(msg.get("segments") or 1)
            async with self.redis.pipeline(transaction=True) as pipe:
                self._set_state(pipe, msg_id, {**counts, "state": "sent", "sent_at": now,
                                               "provider_id": result.provider_id})
                pipe.zrem(self.queue_key, msg_id)
                pipe.incrby(self._segments_key(now), segments)
                if result.provider_id:
                    pipe.set(_pid_key(self.provider, result.provider_id, phone), msg_id,
                             ex=REPORT_TTL)
                await pipe.execute()
            metrics.SEGMENTS.labels(self.provider, msg["kind"]).inc(segments)
            if result.provider_id:
                parked = await self.redis.getdel(_pending_key(self.provider,
                                                              result.provider_id, phone))
                if parked:
                    await self._apply_report(msg_id, DeliveryReport(**json.loads(parked)))
            return "sent"
        if result.outcome is Outcome.THROTTLED and msg.get("key"):
            async with self.redis.pipeline(transaction=True) as pipe:
                self._set_state(pipe, msg_id, {**counts, "state": THROTTLED,
                                               "not_before": now + (result.retry_after or 60),
                                               "waiting_for": f"provider flow control {result.code}"})
                pipe.zrem(self.queue_key, msg_id)
                await pipe.execute()
            log.info("sms %s to %s: provider flow control %s; left to the sender", msg_id,
                     mask(phone), result.code)
            return THROTTLED
        if result.outcome is Outcome.THROTTLED:
            await self._defer(msg, now + (result.retry_after or 60),
                              f"provider flow control {result.code}", **counts)
            return "queued"
        if result.outcome is Outcome.RETRY and failures < self.max_attempts:
            await self._defer(msg, now + min(5 * 2 ** failures, 900),
                              f"transient failure {result.code} (attempt {attempts})", **counts)
            return "queued"
        await self._finish(msg, "failed", error_code=result.code,
                           error_message=result.message[:200], **counts)
        log.warning("sms %s to %s failed for good: %s %s", msg_id, mask(phone), result.code,
                    result.message)
        return "failed"

    async def run_due(self, limit: int = 100) -> int:
        """Attempt the messages whose time has come, one lease at a time; returns how many this
        instance took."""
        taken = 0
        while taken < limit and not self._stopping.is_set():
            now = self.clock()
            msg_id = await self._take_due(keys=[self.queue_key],
                                          args=[now, now + self.lease_seconds])
            if not msg_id:
                break
            taken += 1
            try:
                await self.process(msg_id)
            except Exception:  # noqa: BLE001 - one bad message must not stop the queue
                log.exception("sms %s: processing failed; retried in a minute", msg_id)
                await self.redis.zadd(self.queue_key, {msg_id: now + RETRY_AFTER_ERROR})
        return taken

    async def run_forever(self, interval: float = 1.0) -> None:
        """The worker loop of one gateway instance; returns after :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                await self.run_due()
            except Exception:  # noqa: BLE001 - Redis blips must not kill the worker
                log.exception("sms outbox worker: pass failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), interval)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        """Let the worker finish the message in hand, then return (graceful shutdown)."""
        self._stopping.set()

    async def record_report(self, report: DeliveryReport, provider: str | None = None) -> str:
        """Apply a delivery report of ``provider`` (default: the sending one); returns "applied",
        "parked" (send not recorded yet), "stale" (older than what we have) or "duplicate"."""
        provider = provider or self.provider
        msg_id = await self.redis.get(_pid_key(provider, report.provider_id, report.phone))
        if not msg_id and report.out_id:
            # Sent but recorded through reconciliation, which may not learn the provider's id:
            # the reference names the message (a keyed one by its key and number).
            msg_id = await self._by_reference(report.out_id, report.phone)
            if msg_id:
                await self.redis.set(_pid_key(provider, report.provider_id, report.phone),
                                     msg_id, ex=REPORT_TTL)
        if not msg_id:
            await self.redis.set(_pending_key(provider, report.provider_id, report.phone),
                                 json.dumps(report.__dict__), ex=REPORT_TTL)
            if report.out_id:
                await self.redis.set(_pending_ref_key(provider, report.out_id, report.phone),
                                     json.dumps(report.__dict__), ex=REPORT_TTL)
            return "parked"
        return await self._apply_report(msg_id, report)

    async def _by_reference(self, out_id: str, phone: str) -> str | None:
        indexed = await self.redis.get(_ref_key(self.provider, out_id, phone))
        for candidate in (keyed_id(out_id, phone), out_id, *([indexed] if indexed else [])):
            msg = await self.redis.hmget(_msg_key(candidate), "phone", "state")
            if msg[0] == phone and msg[1] in ("sent", "delivered", "undelivered"):
                return candidate
        return None

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
        if msg.get("key"):
            await append_report(self.redis, msg["key"], "sms", report.delivered, report.code)
        if not report.delivered:
            log.warning("sms %s to %s not delivered: %s", msg_id, mask(report.phone), report.code)
        return "applied"
