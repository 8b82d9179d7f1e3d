"""The one outbound path: ``Deliverer.deliver(conversation_id, content, purpose)``.

Everything that sends to a customer (the answers of a live turn on every channel, hand-off
agents, notices, verification codes) calls :meth:`Deliverer.deliver`; the channels get it as
:func:`deliver_via` (``channels.messages.Deliver``). Channel adapters
(:class:`channels.messages.ChannelAdapter`) only render and transport; the bookkeeping is done
here, once, in this order:

1. the conversation id's prefix picks the adapter; none → ``skipped`` ``no_channel``;
2. a notice to a conversation that opted out → ``skipped`` ``opted_out`` (replies and agent
   messages are never blocked by opt-out: the customer is talking to us);
3. a non-urgent notice during quiet hours → stored in the scheduled set and ``queued`` with
   ``when`` = the end of quiet hours;
4. the channel's rate limit for that purpose (token buckets per conversation, see
   ``DELIVERY_RATE_LIMITS``): a reply or agent message over it is ``queued`` until the budget
   allows (never dropped: the customer waits for it); a notice over it is ``skipped``
   ``rate_limited`` with ``when`` = when the budget would allow one, because a notice's value
   decays (an outage notice) and the sender is better placed to decide;
5. per-conversation ordering: a lock per conversation in Redis (and a FIFO lock in this
   process), with a bounded wait, held around the adapter's send, so two gateway instances
   delivering to one conversation never interleave; still busy after the wait → ``failed``
   ``conversation_busy`` (retry helps);
6. the adapter's ``send``, bounded by a timeout.

A transactional notice (kind in :data:`channels.messages.TRANSACTIONAL_KINDS`: a one-time
code, the confirmation of 退订/订阅: what the customer has just asked for) skips steps 2 to 4:
opt-out does not stop it, quiet hours do not hold it and it uses no notice budget (its sender
caps it); it is still ordered (5).

A non-transactional notice that was sent or queued becomes the conversation's last notice
(``pd:notice:last:<conversation id>``, see :mod:`channels.notice_context`), which the router
passes to Rasa with the customer's next messages, so a reply is answered in its context.

It never raises for a channel or Redis failure: the result is ``failed`` with a reason and
whether a retry may help, plus a log line and a metric. Every call ends in one masked log line
and one count of ``powerdesk_gateway_deliveries_total{channel, purpose, status, reason}``.

Scheduled deliveries live in one sorted set (``pd:delivery:scheduled``), scored by the unix
time they are due; the member is the delivery itself (JSON after a sortable creation stamp, so
deliveries due at the same moment go in the order they were made). :meth:`run_due` leases due
members with one Lua script (it moves their score a lease ahead instead of removing them) and
removes each only after its outcome is known, so an instance that crashes mid-way loses
nothing: the lease runs out and another instance takes the delivery (at least once).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from redis.exceptions import LockError, RedisError

from channels import metrics
from channels.keyed_lock import KeyedLocks
from channels.keys import DELIVERER_KEY
from channels.messages import (PURPOSES, Button, ChannelAdapter, Deliver, DeliveryResult, Notice,
                               Purpose, Reply)
from channels.notice_context import encode_notice, notice_key
from channels.redis_batch import KeyOps
from channels.optout import OptOutStore
from channels.quiet_hours import QuietHours
from channels.redis_text import redis_text
from channels.router import log_id
from integrations.rate_limit import Bucket, Rate, TokenBuckets

log = logging.getLogger(__name__)

SCHEDULE_KEY = "pd:delivery:scheduled"
LEASE_SECONDS = 120.0        # longer than a lock wait plus a send
MAX_AGE_SECONDS = 86400.0    # a scheduled delivery still not out after a day is given up
MAX_ATTEMPTS = 5             # transient failures of a scheduled delivery before giving up
NOTICE_CONTEXT_SECONDS = 72 * 3600  # how long replies are read in a notice's context

# Members are "<created, µs, 20 digits>:<id>:<json>"; ties in score sort by member.
_LEASE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
"""

Content = Sequence[Reply] | Notice
_REASON = re.compile(r"[a-z0-9_.]{0,40}")
# Rate limits by (channel, purpose); channel "*" applies to every channel without its own entry.
RateLimits = Mapping[tuple[str, str], Sequence[Rate]]


def _turn_key(conversation_id: str) -> str:
    """The Redis lock of a conversation's delivery turn."""
    return f"pd:delivery:turn:{conversation_id}"


def encode_content(content: Content) -> dict[str, Any]:
    """``content`` as JSON-ready data: ``{"notice": {kind, params, urgent, key}}`` or
    ``{"replies": [{text, buttons: [[title, payload]], image, custom}]}``."""
    if isinstance(content, Notice):
        return {"notice": {"kind": content.kind, "params": dict(content.params),
                           "urgent": content.urgent, "key": content.key}}
    return {"replies": [{"text": r.text, "buttons": [[b.title, b.payload] for b in r.buttons],
                         "image": r.image, "custom": r.custom} for r in content]}


def decode_content(data: Mapping[str, Any]) -> Content:
    """The inverse of :func:`encode_content`; raises ValueError/TypeError/KeyError if malformed."""
    if "notice" in data:
        notice = data["notice"]
        return Notice(str(notice["kind"]), {str(k): str(v) for k, v in notice["params"].items()},
                      bool(notice.get("urgent", False)), str(notice.get("key") or ""))
    return [Reply(str(r["text"]), tuple(Button(str(t), str(p)) for t, p in r.get("buttons") or ()),
                  r.get("image"), r.get("custom")) for r in data["replies"]]


def _valid(content: Any, purpose: str) -> bool:
    if purpose not in PURPOSES:
        return False
    if purpose == "notice":
        return isinstance(content, Notice)
    return (not isinstance(content, (Notice, str, bytes)) and isinstance(content, Sequence)
            and all(isinstance(r, Reply) for r in content))


class _Busy(Exception):
    """The conversation's previous delivery still held its lock after the bounded wait."""


class Deliverer:
    """The delivery facade of one gateway instance (see the module docstring)."""

    def __init__(self, redis: Any, optouts: OptOutStore, quiet: QuietHours,
                 rate_limits: RateLimits | None = None, *,
                 clock: Callable[[], float] = time.time, lock_wait_seconds: float = 10.0,
                 send_timeout_seconds: float = 30.0, schedule_key: str = SCHEDULE_KEY,
                 notice_context_seconds: int = NOTICE_CONTEXT_SECONDS) -> None:
        self._redis = redis
        self.optouts = optouts  # the opt-out store it honours (for channels' 退订 handling)
        self._quiet = quiet
        self._rate_limits = dict(rate_limits or {})
        self._clock = clock
        self._lock_wait = lock_wait_seconds
        self._send_timeout = send_timeout_seconds
        self._schedule_key = schedule_key
        self._notice_context_seconds = notice_context_seconds
        self._adapters: dict[str, ChannelAdapter] = {}
        self._local = KeyedLocks()
        self._lease = redis.register_script(_LEASE_LUA)

    def register(self, adapter: ChannelAdapter) -> None:
        """Send conversations ``<adapter.name>:…`` through ``adapter`` (replaces an earlier one)."""
        self._adapters[adapter.name] = adapter

    @property
    def channels(self) -> tuple[str, ...]:
        """The registered channel prefixes."""
        return tuple(self._adapters)

    def _limits(self, channel: str, purpose: str) -> Sequence[Rate]:
        return self._rate_limits.get((channel, purpose), self._rate_limits.get(("*", purpose), ()))

    async def deliver(self, conversation_id: str, content: Content,
                      purpose: Purpose) -> DeliveryResult:
        """Send ``content`` to ``conversation_id`` for ``purpose`` through its channel, applying
        opt-out, quiet hours, rate limits and ordering; never raises (except cancellation)."""
        return await self._deliver(conversation_id, content, purpose, attempt=0)

    async def _deliver(self, conversation_id: str, content: Content, purpose: Purpose,
                       attempt: int) -> DeliveryResult:
        channel, _, user_id = conversation_id.partition(":")
        adapter = self._adapters.get(channel) if user_id else None
        try:
            if adapter is None:
                result = DeliveryResult("skipped", "no_channel")
            elif not _valid(content, purpose):
                result = DeliveryResult("failed", "invalid_content")
            elif purpose != "notice" and not content:
                # Nothing to say (a handed-off customer's message: the agent answers): no turn
                # lock, no adapter, so it never waits behind or delays the agent's reply.
                result = DeliveryResult("skipped", "empty")
            else:
                result = await self._gate_and_send(adapter, conversation_id, user_id, content,
                                                   purpose, attempt)
        except (RedisError, OSError) as exc:
            log.warning("delivery to %s: Redis failed (%s)", log_id(conversation_id),
                        type(exc).__name__)
            result = DeliveryResult("failed", "redis_unavailable", retry=True)
        except Exception:  # noqa: BLE001 - a delivery must end in a result, not a traceback
            log.exception("delivery to %s failed unexpectedly", log_id(conversation_id))
            metrics.ERRORS.labels("delivery").inc()
            result = DeliveryResult("failed", "error", retry=True)
        self._record(channel if adapter else "unknown", conversation_id, content, purpose, result)
        if (isinstance(content, Notice) and not content.transactional
                and result.status in ("sent", "queued") and self._notice_context_seconds > 0):
            await self._remember_notice(conversation_id, content)
        return result

    async def deliver_notices(self, items: Sequence[tuple[str, Notice]]) -> list[DeliveryResult]:
        """Deliver many notices at once (a broadcast's batch): for each, the same rules, result,
        metric and log line as :meth:`deliver` with purpose ``notice``; the batch shares its
        Redis work: one opt-out lookup, one command taking the conversations' turns and one
        giving them back with the last-notice records (:mod:`channels.redis_batch`); an
        adapter with ``send_notices`` (SMS, WeChat) gets its share of the batch in one call
        (its own records in one command each, SMS in provider batches), the others one send
        per notice. What the batch cannot settle alike (a transactional notice, a rate-limited
        channel, quiet hours, a conversation whose turn is held) goes through :meth:`deliver`
        one by one. Never raises (but cancellation)."""
        results: list[DeliveryResult | None] = [None] * len(items)
        batch: list[tuple[int, ChannelAdapter, str, str, Notice]] = []
        alone: list[int] = []
        now = self._clock()
        for i, (conversation_id, notice) in enumerate(items):
            channel, _, user_id = conversation_id.partition(":")
            adapter = self._adapters.get(channel) if user_id else None
            if (adapter is None or not isinstance(notice, Notice) or notice.transactional
                    or self._limits(channel, "notice")
                    or (not notice.urgent and self._quiet.is_quiet(now))):
                alone.append(i)
            else:
                batch.append((i, adapter, conversation_id, user_id, notice))
        if batch:
            try:
                await self._deliver_batch(batch, results)
            except (RedisError, OSError) as exc:
                log.warning("delivery of %d notices: Redis failed (%s)", len(batch),
                            type(exc).__name__)
                for i, adapter, conversation_id, _user, notice in batch:
                    if results[i] is None:
                        results[i] = DeliveryResult("failed", "redis_unavailable", retry=True)
                        self._record(adapter.name, conversation_id, notice, "notice", results[i])
        alone += [i for i, *_ in batch if results[i] is None]  # their turn was held
        settled = await asyncio.gather(*(self.deliver(items[i][0], items[i][1], "notice")
                                         for i in alone))
        for i, result in zip(alone, settled):
            results[i] = result
        return [r if r is not None else DeliveryResult("failed", "error", retry=True)
                for r in results]

    async def _deliver_batch(self, batch: Sequence[tuple[int, ChannelAdapter, str, str, Notice]],
                             results: list[DeliveryResult | None]) -> None:
        opted = await self.optouts.opted_out_among([b[2] for b in batch])
        going = []
        for entry in batch:
            i, adapter, conversation_id, _user, notice = entry
            if conversation_id in opted:
                results[i] = DeliveryResult("skipped", "opted_out")
                self._record(adapter.name, conversation_id, notice, "notice", results[i])
            else:
                going.append(entry)
        if not going:
            return
        # The turns taken, and later given back with the last-notice records, in one command
        # each (channels.redis_batch: one script on a server, a pipeline on a Cluster).
        token = uuid.uuid4().hex
        take = KeyOps()
        for entry in going:
            take.set(_turn_key(entry[2]), token, px=int((self._send_timeout + 5) * 1000), nx=True)
        taken = await take.run(self._redis)
        mine = [entry for entry, ok in zip(going, taken) if ok]
        after = KeyOps()  # what goes back to Redis once the batch is sent
        for entry in mine:
            after.delete_if(_turn_key(entry[2]), token)
        by_adapter: dict[str, list[int]] = {}
        for n, entry in enumerate(mine):
            by_adapter.setdefault(entry[1].name, []).append(n)
        sent: list[DeliveryResult | None] = [None] * len(mine)
        try:
            answers = await asyncio.gather(*(self._send_many(mine[ns[0]][1], [mine[n] for n in ns])
                                             for ns in by_adapter.values()))
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await after.run(self._redis)  # the turns back; else they expire by themselves
            raise
        for ns, results_of in zip(by_adapter.values(), answers):
            for n, result in zip(ns, results_of):
                sent[n] = result
        remembered = 0
        for (i, adapter, conversation_id, _user, notice), result in zip(mine, sent):
            results[i] = result
            self._record(adapter.name, conversation_id, notice, "notice", result)
            if result.status in ("sent", "queued") and self._notice_context_seconds > 0:
                after.set(notice_key(conversation_id), encode_notice(notice, self._clock()),
                          px=self._notice_context_seconds * 1000)
                remembered += 1
        try:
            await after.run(self._redis)
        except (RedisError, OSError) as exc:
            # The deliveries stand; the turns expire by themselves (send timeout + 5 s).
            log.warning("turns of %d conversations not given back, notice context of %d not "
                        "recorded (%s)", len(mine), remembered, type(exc).__name__)
            if remembered:
                metrics.ERRORS.labels("notice_context").inc()

    async def _send_many(self, adapter: ChannelAdapter,
                         entries: Sequence[tuple[int, ChannelAdapter, str, str, Notice]]
                         ) -> list[DeliveryResult]:
        """The notices of one adapter, their turns held: through its ``send_notices`` (a batch
        at once) when it has one, else each through :meth:`_send_alone`, concurrently."""
        send_notices = getattr(adapter, "send_notices", None)
        if send_notices is None or len(entries) == 1:
            return list(await asyncio.gather(*(self._send_alone(adapter, cid, user, notice)
                                               for _i, _a, cid, user, notice in entries)))
        failed: DeliveryResult | None = None
        try:
            results = await asyncio.wait_for(
                send_notices([(user, notice) for _i, _a, _cid, user, notice in entries]),
                self._send_timeout)
        except asyncio.TimeoutError:
            failed = DeliveryResult("failed", "timeout", retry=True)
        except (RedisError, OSError) as exc:
            log.warning("delivery of %d notices by %s: Redis failed (%s)", len(entries),
                        adapter.name, type(exc).__name__)
            failed = DeliveryResult("failed", "redis_unavailable", retry=True)
        except Exception:  # noqa: BLE001 - an adapter bug or transport error
            log.exception("channel %s failed to send %d notices", adapter.name, len(entries))
            metrics.ERRORS.labels("delivery").inc()
            failed = DeliveryResult("failed", "error", retry=True)
        if failed is not None:
            return [failed] * len(entries)
        if len(results) != len(entries) or not all(isinstance(r, DeliveryResult) for r in results):
            log.error("channel %s returned %d answers for %d notices", adapter.name, len(results),
                      len(entries))
            return [DeliveryResult("failed", "error", retry=True)] * len(entries)
        return list(results)

    async def _send_alone(self, adapter: ChannelAdapter, conversation_id: str, user_id: str,
                          notice: Notice) -> DeliveryResult:
        """The adapter's send, the conversation's turn already held; like :meth:`_send`."""
        try:
            result = await asyncio.wait_for(adapter.send(user_id, notice, "notice"),
                                            self._send_timeout)
        except asyncio.TimeoutError:
            return DeliveryResult("failed", "timeout", retry=True)
        except (RedisError, OSError) as exc:
            log.warning("delivery to %s: Redis failed (%s)", log_id(conversation_id),
                        type(exc).__name__)
            return DeliveryResult("failed", "redis_unavailable", retry=True)
        except Exception:  # noqa: BLE001 - an adapter bug or transport error
            log.exception("channel %s failed to send to %s", adapter.name, log_id(conversation_id))
            metrics.ERRORS.labels("delivery").inc()
            return DeliveryResult("failed", "error", retry=True)
        if not isinstance(result, DeliveryResult):
            log.error("channel %s returned %r instead of a DeliveryResult", adapter.name, result)
            return DeliveryResult("failed", "error", retry=True)
        return result

    async def _remember_notice(self, conversation_id: str, notice: Notice) -> None:
        """The conversation's last notice, for replies to it (channels/notice_context.py): one
        SET with a TTL; a Redis failure is logged, the delivery's result stands."""
        try:
            await self._redis.set(notice_key(conversation_id),
                                  encode_notice(notice, self._clock()),
                                  ex=self._notice_context_seconds)
        except (RedisError, OSError) as exc:
            log.warning("notice context of %s not recorded (%s)", log_id(conversation_id),
                        type(exc).__name__)
            metrics.ERRORS.labels("notice_context").inc()

    async def _gate_and_send(self, adapter: ChannelAdapter, conversation_id: str, user_id: str,
                             content: Content, purpose: Purpose, attempt: int) -> DeliveryResult:
        now = self._clock()
        if purpose == "notice" and content.transactional:
            return await self._send(adapter, conversation_id, user_id, content, purpose)
        if purpose == "notice":
            if await self.optouts.is_opted_out(conversation_id):
                return DeliveryResult("skipped", "opted_out")
            if not content.urgent and self._quiet.is_quiet(now):
                return await self._schedule(conversation_id, content, purpose,
                                            self._quiet.next_allowed(now), "quiet_hours", attempt)
        limits = self._limits(adapter.name, purpose)
        if limits:
            verdict = await TokenBuckets(self._redis, f"delivery:{conversation_id}").take(
                [Bucket(f"{purpose}:{rate}", rate) for rate in limits], now=now)
            if not verdict.allowed:
                when = now + verdict.retry_after
                if purpose == "notice":
                    return DeliveryResult("skipped", "rate_limited", when=when)
                return await self._schedule(conversation_id, content, purpose, when,
                                            "rate_limited", attempt)
        return await self._send(adapter, conversation_id, user_id, content, purpose)

    async def _send(self, adapter: ChannelAdapter, conversation_id: str, user_id: str,
                    content: Content, purpose: Purpose) -> DeliveryResult:
        """The adapter's send in the conversation's turn, bounded by the send timeout."""
        try:
            async with self._turn(conversation_id, alone_if_redis_fails=purpose == "reply"):
                try:
                    result = await asyncio.wait_for(adapter.send(user_id, content, purpose),
                                                    self._send_timeout)
                except asyncio.TimeoutError:
                    return DeliveryResult("failed", "timeout", retry=True)
                except RedisError:
                    raise
                except Exception:  # noqa: BLE001 - an adapter bug or transport error
                    log.exception("channel %s failed to send to %s", adapter.name,
                                  log_id(conversation_id))
                    metrics.ERRORS.labels("delivery").inc()
                    return DeliveryResult("failed", "error", retry=True)
        except _Busy:
            return DeliveryResult("failed", "conversation_busy", retry=True)
        if not isinstance(result, DeliveryResult):
            log.error("channel %s returned %r instead of a DeliveryResult", adapter.name, result)
            return DeliveryResult("failed", "error", retry=True)
        return result

    async def schedule(self, conversation_id: str, content: Content, purpose: Purpose,
                       when: float, reason: str = "retry", attempt: int = 0) -> DeliveryResult:
        """Deliver later, at ``when`` (unix time), through :meth:`run_due`; ``queued``."""
        return await self._schedule(conversation_id, content, purpose, when, reason, attempt)

    async def _schedule(self, conversation_id: str, content: Content, purpose: Purpose,
                        when: float, reason: str, attempt: int) -> DeliveryResult:
        created = self._clock()
        body = json.dumps({"conversation_id": conversation_id, "purpose": purpose,
                           "content": encode_content(content), "attempt": attempt,
                           "created": created}, ensure_ascii=False, separators=(",", ":"))
        member = f"{int(created * 1e6):020d}:{uuid.uuid4().hex}:{body}"
        await self._redis.zadd(self._schedule_key, {member: when})
        return DeliveryResult("queued", reason, when=when)

    async def run_due(self, limit: int = 100) -> int:
        """Deliver the scheduled deliveries that are due; returns how many this instance took."""
        now = self._clock()
        members = await self._lease(keys=[self._schedule_key],
                                    args=[repr(now), repr(now + LEASE_SECONDS), limit])
        for raw in members:
            member = redis_text(raw)
            try:
                await self._run_scheduled(member, now)
            except Exception:  # noqa: BLE001 - one bad entry must not stop the others
                log.exception("scheduled delivery failed; retried when its lease runs out")
                metrics.ERRORS.labels("delivery_schedule").inc()
                continue
            await self._redis.zrem(self._schedule_key, member)
        return len(members)

    async def _run_scheduled(self, member: str, now: float) -> None:
        try:
            entry = json.loads(member.split(":", 2)[2])
            conversation_id, purpose = str(entry["conversation_id"]), entry["purpose"]
            content, attempt = decode_content(entry["content"]), int(entry["attempt"])
            created = float(entry["created"])
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            log.error("malformed scheduled delivery dropped")
            metrics.ERRORS.labels("delivery_schedule").inc()
            return
        if now - created > MAX_AGE_SECONDS:
            channel = conversation_id.partition(":")[0]
            self._record(channel if channel in self._adapters else "unknown", conversation_id,
                         content, purpose, DeliveryResult("failed", "expired"))
            return
        result = await self._deliver(conversation_id, content, purpose, attempt)
        if result.status == "failed" and result.retry and attempt + 1 < MAX_ATTEMPTS:
            await self._schedule(conversation_id, content, purpose,
                                 now + min(30 * 2 ** attempt, 1800), "retry", attempt + 1)

    async def run_forever(self, interval: float = 1.0) -> None:
        """The scheduled-delivery worker of one gateway instance."""
        while True:
            try:
                while await self.run_due() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a Redis blip must not end the worker
                log.exception("scheduled delivery worker: pass failed")
            await asyncio.sleep(interval)

    @contextlib.asynccontextmanager
    async def _turn(self, conversation_id: str,
                    alone_if_redis_fails: bool = False) -> AsyncIterator[None]:
        """The conversation's delivery turn: FIFO in this process, exclusive across instances.
        Its own lock, not the router's: a delivery must not wait for Rasa's answer. With
        ``alone_if_redis_fails`` (an answer the customer is waiting for, like the router's busy
        reply when Redis is down), a Redis failure leaves only this process's order."""
        started = time.monotonic()
        try:
            held = await self._local.acquire(conversation_id, self._lock_wait)
        except asyncio.TimeoutError:
            raise _Busy() from None
        async with held:
            remaining = max(0.0, self._lock_wait - (time.monotonic() - started))
            lock = self._redis.lock(_turn_key(conversation_id),
                                    timeout=self._send_timeout + 5, sleep=0.01,
                                    blocking=True, blocking_timeout=remaining)
            try:
                acquired = await lock.acquire()
            except (RedisError, OSError) as exc:
                if not alone_if_redis_fails:
                    raise
                log.warning("delivery to %s: turn lock unavailable (%s); ordered in this "
                            "instance only", log_id(conversation_id), type(exc).__name__)
                metrics.ERRORS.labels("delivery_lock").inc()
                lock = None
                acquired = True
            if not acquired:
                raise _Busy()
            try:
                yield
            finally:
                if lock is not None:
                    try:
                        await lock.release()
                    except (LockError, RedisError) as exc:
                        log.warning("delivery lock release failed (%s)", type(exc).__name__)

    def _record(self, channel: str, conversation_id: str, content: Content, purpose: str,
                result: DeliveryResult) -> None:
        label = purpose if purpose in PURPOSES else "invalid"
        # Reasons are short codes; free text from an adapter would multiply the metric's series.
        reason = result.reason if _REASON.fullmatch(result.reason) else "other"
        metrics.DELIVERIES.labels(channel, label, result.status, reason).inc()
        level = logging.WARNING if result.status == "failed" else logging.INFO
        if not log.isEnabledFor(level):  # a broadcast worker logs warnings only: no masking work
            return
        what = f"notice {content.kind}" if isinstance(content, Notice) else label
        detail = f" ({result.reason})" if result.reason else ""
        if result.when is not None:
            detail += f" until {datetime.fromtimestamp(result.when, self._quiet.tz):%Y-%m-%d %H:%M:%S}"
        log.log(level, "delivery %s to %s: %s%s", what, log_id(conversation_id), result.status,
                detail)


__all__ = ["DELIVERER_KEY", "Deliverer", "deliver_via"]


def deliver_via(app: web.Application) -> Deliver:
    """``app``'s :meth:`Deliverer.deliver`, looked up at each call: the channels are built
    before the deliverer (it registers their adapters)."""

    async def deliver(conversation_id: str, content: Content, purpose: Purpose) -> DeliveryResult:
        return await app[DELIVERER_KEY].deliver(conversation_id, content, purpose)

    return deliver
