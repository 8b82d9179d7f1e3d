"""The broadcast engine: plans a campaign's audience, sends it, and follows the delivery reports.

Planning (:meth:`Engine.plan_audience`) reads the recipients from the sources page by page and
adds each customer once (:class:`~channels.broadcast.campaigns.Campaigns`): it can stop anywhere
and start again from the beginning. One planner per campaign at a time (a lease in Redis).

Sending (:meth:`Engine.work`, any number of workers in any number of processes): a worker reads
recipients from the campaign's stream through the consumer group, takes over the entries of a
worker that died (no heartbeat, ``pd:bc:{engine}:worker:<consumer>``: at once) or stopped answering
(XAUTOCLAIM after ``BROADCAST_CLAIM_IDLE_SECONDS``), puts held recipients back when they are due,
and for each recipient it claims:

1. the first of the customer's conversations (the preferred one first) whose channel this
   process can send to; none → skipped ``no_channel``;
2. a non-urgent notice during quiet hours (DELIVERY_QUIET_HOURS) is held until they end; urgent
   outage notices go at once;
3. a provider paused for every worker (it answered "throttled") → held until the pause ends;
4. a token from the provider's bucket (BROADCAST_RATES, shared by every worker in Redis);
5. ``Deliverer.deliver(cid, Notice(kind, params, urgent, key="bc:<campaign>:<customer>"),
   "notice")`` (opt-out, the conversation's notice budget, ordering: see channels.delivery);
6. a permanent WeChat failure (failed without retry, or skipped ``not_following``) → the same
   notice by SMS to the customer's SMS conversation or phone on record, if any;
7. the result: sent (or queued by the web chat outbox, or scheduled by the deliverer) → ``sent``;
   queued in the SMS outbox → held (``sms_queued``) and submitted again with the same key
   later, which sends it if nobody did meanwhile (e.g. a worker killed mid-send held it);
   skipped → ``skipped`` (reason);
   failed ``throttled`` → the provider paused (until ``when`` or BROADCAST_THROTTLE_SECONDS) and
   the recipient held; other transient failures → held for a retry (exponential backoff) until
   BROADCAST_MAX_ATTEMPTS; else ``failed`` (reason; a masked line kept for the report).

Deliveries run concurrently (BROADCAST_CONCURRENCY in flight); each batch of recipients costs a
few Lua calls (claim, finish), not one per recipient, and providers without a rate limit get the
batch through ``Deliverer.deliver_notices`` (the batch's opt-outs, turns and last-notice records in
a few round trips).

Delivery reports (:class:`ReportConsumer`): the channels append the outcome of keyed notices to
``pd:notice:reports`` (key, channel, status delivered|undelivered, code); the consumer group
``broadcast`` moves the recipient from ``sent`` to ``delivered``/``undelivered``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter as MetricCounter
from redis.exceptions import LockError, RedisError, ResponseError

from channels.broadcast.campaigns import (FINAL, GROUP, NO_CHANNEL, Campaigns, Outcome, decode_entry,
                                          encode_member, encode_shared, key, stream_entries)
from channels.broadcast.config import EngineConfig
from channels.messages import DeliveryResult, Notice
from channels.optout import OptOutStore
from channels.quiet_hours import QuietHours
from channels.redis_text import redis_text
from channels.router import log_id
from integrations.masking import mask_account
from integrations.rate_limit import Bucket, Rate, TokenBuckets

log = logging.getLogger(__name__)

REPORTS_STREAM = "pd:notice:reports"
REPORTS_GROUP = "broadcast"
# Pauses and heartbeats share the hash tag {engine}: one MGET reads several on a Redis Cluster.
PAUSE_KEY = "pd:bc:{{engine}}:pause:{}"  # a provider paused for every worker: value = until
PLANNER_LEASE_SECONDS = 30.0
WORKER_KEY = "pd:bc:{{engine}}:worker:{}"  # a worker's heartbeat: its stream entries are not orphans
HEARTBEAT_SECONDS = 5.0
RETRY_BASE_SECONDS = 30.0
SMS_RECHECK_SECONDS = 15.0           # an SMS still in the outbox is asked about again after this
RETRY_MAX_SECONDS = 900.0
MAINTENANCE_SECONDS = 0.5            # a busy worker looks for due held / stuck entries this often
SKIP_REASONS = ("opted_out", "quiet_hours", "no_channel", "rate_limited", "already_notified")

OUTCOMES = MetricCounter("powerdesk_broadcast_recipients_total",
                         "Broadcast recipients finished, by campaign kind, channel and state",
                         ["kind", "channel", "state"])


def notice_key(campaign_id: str, customer: str) -> str:
    """The idempotency key of one campaign's notice to one customer."""
    return f"bc:{campaign_id}:{customer}"


def parse_notice_key(value: str) -> tuple[str, str] | None:
    """(campaign id, customer) of a broadcast notice key, None for any other key."""
    if not value.startswith("bc:"):
        return None
    campaign_id, _, customer = value[3:].rpartition(":")
    return (campaign_id, customer) if campaign_id and customer else None


@dataclass(frozen=True)
class _Recipient:
    entry_id: str
    customer: str
    conversations: tuple[str, ...]
    phone: str | None
    params: dict[str, str]
    attempts: int

    @property
    def payload(self) -> str:
        """The recipient as kept while held (put back on the stream when due)."""
        return encode_member(self.customer, self.conversations, self.phone, self.params)


@dataclass
class DryRun:
    """What a campaign would do now: recipients per channel and skipped per reason."""

    campaign_id: str
    channels: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)

    @property
    def audience(self) -> int:
        return sum(self.channels.values()) + sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "audience": self.audience,
                "channels": dict(self.channels),
                "skipped": {reason: self.skipped.get(reason, 0) for reason in SKIP_REASONS}}


class Engine:
    """Plans and sends campaigns through one :class:`~channels.delivery.Deliverer`."""

    def __init__(self, redis: Any, deliverer: Any, config: EngineConfig, quiet: QuietHours, *,
                 notice_limits: Mapping[tuple[str, str], Sequence[Rate]] | None = None,
                 clock: Callable[[], float] = time.time, consumer: str | None = None) -> None:
        """``deliverer``: a :class:`~channels.delivery.Deliverer` with the channels' adapters;
        ``notice_limits``: the deliverer's rate limits (GatewayConfig.delivery_rate_limits), for
        the dry run's ``rate_limited`` count."""
        self.redis = redis
        self.deliverer = deliverer
        self.config = config
        self.quiet = quiet
        self.campaigns = Campaigns(redis)
        self.clock = clock
        self.consumer = consumer or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._notice_limits = dict(notice_limits or {})
        self._buckets = TokenBuckets(redis, "broadcast")
        self._in_flight = asyncio.Semaphore(config.concurrency)
        self._paused_until: dict[str, float] = {}  # the pauses this process set
        self._heartbeat: asyncio.Task | None = None
        self._working = 0  # work() calls running: the heartbeat beats while there are some
        self._orphans_checked = 0.0
        self._maintained: dict[str, float] = {}  # campaign → when held/stuck entries were looked for

    # ---- planning ------------------------------------------------------------------------------

    async def open(self, plan: Any) -> bool:
        """Store the campaign of ``plan`` unless it exists (True when created)."""
        created = await self.campaigns.create(plan, self.clock())
        if created:
            log.info("campaign %s created: %s", plan.campaign_id, plan.title)
        return created

    async def plan_audience(self, plan: Any, sources: Any) -> bool:
        """Read the audience of ``plan`` from ``sources`` into the campaign (each customer
        once). False when another planner holds the campaign's lease."""
        lock = self.redis.lock(key(plan.campaign_id, "planner"), timeout=PLANNER_LEASE_SECONDS)
        if not await lock.acquire(blocking=False):
            return False
        heartbeat = asyncio.create_task(self._keep(lock))
        try:
            await self.campaigns.start_planning(plan.campaign_id)
            page: list[Any] = []
            added = 0
            async for r in sources.recipients(plan, page_size=self.config.page_size):
                page.append(r)
                if len(page) >= self.config.page_size:
                    added += await self._add_page(plan.campaign_id, page)
                    page = []
            added += await self._add_page(plan.campaign_id, page)
            await self.campaigns.planned(plan.campaign_id, self.clock())
            log.info("campaign %s planned: %d new recipients", plan.campaign_id, added)
            return True
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(LockError, RedisError):
                await lock.release()

    async def _add_page(self, campaign_id: str, page: Sequence[Any]) -> int:
        """Add a page of recipients; the parameters they share (an outage's) are stored once
        per stream entry."""
        if not page:
            return 0
        shared = dict(page[0].params)
        for r in page[1:]:
            if shared:
                shared = {k: v for k, v in shared.items() if r.params.get(k) == v}
        rows = [(r.customer, encode_member(r.customer, r.conversations, r.phone, r.params, shared),
                 "" if r.conversations else "no_channel") for r in page]
        return await self.campaigns.add(campaign_id, rows, self.clock(), batch=self.config.batch,
                                        shared=encode_shared(shared))

    @staticmethod
    async def _keep(lock: Any) -> None:
        while True:
            await asyncio.sleep(PLANNER_LEASE_SECONDS / 3)
            await lock.reacquire()

    async def planner_active(self, campaign_id: str) -> bool:
        """True while some process holds the campaign's planning lease."""
        return bool(await self.redis.exists(key(campaign_id, "planner")))

    async def dry_run(self, plan: Any, sources: Any) -> DryRun:
        """Count what sending ``plan`` now would do, without sending or recording anything."""
        result = DryRun(plan.campaign_id)
        page: list[Any] = []
        async for recipient in sources.recipients(plan, page_size=self.config.page_size):
            page.append(recipient)
            if len(page) >= self.config.page_size:
                await self._dry_page(plan, page, result)
                page = []
        await self._dry_page(plan, page, result)
        return result

    async def _dry_page(self, plan: Any, page: Sequence[Any], result: DryRun) -> None:
        if not page:
            return
        now = self.clock()
        states = await self.campaigns.states(plan.campaign_id, [r.customer for r in page])
        chosen = [self._pick(r.conversations) for r in page]
        reachable = [cid for cid in chosen if cid]
        opted = await OptOutStore(self.redis).opted_out_among(reachable) if reachable else set()
        limited = await self._rate_limited_among(reachable, now)
        quiet = not plan.urgent and self.quiet.is_quiet(now)
        for state, cid in zip(states, chosen):
            if state in FINAL:
                result.skipped["already_notified"] += 1
            elif cid is None:
                result.skipped["no_channel"] += 1
            elif cid in opted:
                result.skipped["opted_out"] += 1
            elif quiet:
                result.skipped["quiet_hours"] += 1
            elif cid in limited:
                result.skipped["rate_limited"] += 1
            else:
                result.channels[cid.partition(":")[0]] += 1

    async def _rate_limited_among(self, cids: Sequence[str], now: float) -> set[str]:
        """The conversations whose notice budget (DELIVERY_RATE_LIMITS) has no token now, read
        without taking any."""
        checks: list[tuple[str, Rate, str]] = []
        for cid in cids:
            channel = cid.partition(":")[0]
            rates = self._notice_limits.get((channel, "notice"),
                                            self._notice_limits.get(("*", "notice"), ()))
            buckets = TokenBuckets(self.redis, f"delivery:{cid}")
            checks += [(cid, rate, buckets.key(f"notice:{rate}")) for rate in rates]
        if not checks:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, _, bucket_key in checks:
                pipe.hmget(bucket_key, "tokens", "at")
            levels = await pipe.execute()
        limited = set()
        for (cid, rate, _), (tokens, at) in zip(checks, levels):
            if tokens is None or at is None:
                continue
            level = float(tokens) + max(0.0, now - float(at)) * rate.count / rate.seconds
            if min(rate.count, level) < 1:
                limited.add(cid)
        return limited

    # ---- sending ----------------------------------------------------------------------------------

    async def run(self, plan: Any, sources: Any) -> str:
        """Create, plan and send ``plan`` in this process (the CLI's ``run``); returns
        ``done`` or ``waiting`` (recipients held for later: quiet hours, a paused provider)."""
        await self.open(plan)
        planning = asyncio.create_task(self.plan_audience(plan, sources))
        try:
            return await self.work(plan.campaign_id, planning=planning)
        finally:
            if not planning.done():
                planning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await planning

    async def work(self, campaign_id: str, *, planning: asyncio.Task | None = None,
                   wait_for_held: float = 2.0) -> str:
        """Send the campaign's recipients until it is ``done``, or ``waiting`` when only held
        recipients due later than ``wait_for_held`` seconds remain, or ``unplanned`` when its
        audience is not read whole and nobody is reading it."""
        meta = await self.campaigns.meta(campaign_id)
        if meta is None:
            raise KeyError(campaign_id)
        context = (meta["kind"], meta["notice_kind"], meta["urgent"] == "1")
        self._working += 1
        if self._heartbeat is None or self._heartbeat.done():
            await self._beat()
            self._heartbeat = asyncio.create_task(self._beating())
        batches: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(max(2, self.config.concurrency // self.config.batch + 1))
        try:
            while True:
                for task in [t for t in batches if t.done()]:
                    batches.discard(task)
                    task.result()  # a batch that failed stops the worker (its entries wait)
                entries = await self._next_entries(campaign_id, busy=bool(batches))
                if entries:
                    await slots.acquire()
                    task = asyncio.create_task(self._batch(campaign_id, context, entries))
                    task.add_done_callback(lambda _t: slots.release())
                    batches.add(task)
                    continue
                if batches:
                    await asyncio.wait(batches, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if planning is not None and planning.done() and planning.exception():
                    raise planning.exception()
                status = await self._idle_status(campaign_id, planning, wait_for_held)
                if status is not None:
                    return status
        finally:
            if batches:
                for task in batches:
                    task.cancel()
                await asyncio.gather(*batches, return_exceptions=True)
            self._working -= 1
            if not self._working and self._heartbeat is not None:
                self._heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._heartbeat

    async def _next_entries(self, campaign_id: str, busy: bool) -> list[tuple[str, str]]:
        """One stream entry (a batch of recipients) for this worker, if any. Held recipients
        due and entries of a stuck worker are looked for when idle, and at most every
        MAINTENANCE_SECONDS while busy (not once per batch)."""
        now = time.monotonic()
        if not busy or now - self._maintained.get(campaign_id, 0.0) >= MAINTENANCE_SECONDS:
            self._maintained[campaign_id] = now
            await self.campaigns.resume_due(campaign_id, self.clock(), batch=self.config.batch)
            entries = await self.campaigns.take_over(campaign_id, self.consumer,
                                                     self.config.claim_idle_seconds, 1)
            if entries:
                log.info("campaign %s: took over a batch of a stopped worker", campaign_id)
                return entries
        entries = await self.campaigns.read(campaign_id, self.consumer, 1,
                                            block_ms=None if busy else 200)
        if entries or busy or time.monotonic() - self._orphans_checked < 1.0:
            return entries
        self._orphans_checked = time.monotonic()
        return await self._orphans(campaign_id)

    async def _beat(self) -> None:
        await self.redis.set(WORKER_KEY.format(self.consumer), "1", ex=int(3 * HEARTBEAT_SECONDS))

    async def _beating(self) -> None:
        """This worker's heartbeat, while the process lives (the task ends with its loop)."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._beat()
            except (RedisError, OSError) as exc:
                log.warning("broadcast worker heartbeat failed (%s)", type(exc).__name__)

    async def _orphans(self, campaign_id: str) -> list[tuple[str, str]]:
        """The pending entries of workers without a heartbeat (killed), taken over at once
        rather than after BROADCAST_CLAIM_IDLE_SECONDS."""
        queue = key(campaign_id, "queue")
        summary = await self.redis.xpending(queue, GROUP)
        names = [redis_text(c["name"]) for c in summary.get("consumers") or ()]
        names = [n for n in names if n != self.consumer]
        if not names:
            return []
        alive = await self.redis.mget([WORKER_KEY.format(n) for n in names])
        for name, beat in zip(names, alive):
            if beat is not None:
                continue
            pending = await self.redis.xpending_range(queue, GROUP, min="-", max="+",
                                                      count=1, consumername=name)
            ids = [p["message_id"] for p in pending]
            if ids:
                claimed = await self.redis.xclaim(queue, GROUP, self.consumer, 0, ids)
                log.info("campaign %s: took over a batch of stopped worker %s", campaign_id, name)
                return stream_entries(claimed)
        return []

    async def _idle_status(self, campaign_id: str, planning: asyncio.Task | None,
                           wait_for_held: float) -> str | None:
        """None to keep working, else why this worker stops."""
        meta = await self.campaigns.meta(campaign_id) or {}
        if meta.get("state") == "done":
            return "done"
        if planning is not None and not planning.done():
            return None
        if await self.campaigns.pending(campaign_id):
            await asyncio.sleep(min(1.0, self.config.claim_idle_seconds / 4))
            return None  # another worker has entries: wait for them or take them over
        held = await self.campaigns.held_next(campaign_id)
        if held is not None:
            delay = held - self.clock()
            if delay > wait_for_held:
                return "waiting"
            await asyncio.sleep(max(0.05, min(delay, 1.0)))
            return None
        if meta.get("planned") != "1":
            if await self.planner_active(campaign_id):
                await asyncio.sleep(0.5)
                return None
            return "unplanned"
        await asyncio.sleep(0.05)  # the last finish is about to mark it done
        return None

    async def _batch(self, campaign_id: str, context: tuple[str, str, bool],
                     entries: Sequence[tuple[str, str]]) -> None:
        kind, notice_kind, urgent = context
        decoded, outcomes = [], []
        for entry_id, payload in entries:
            try:
                members = decode_entry(payload)
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                log.error("campaign %s: malformed stream entry %s dropped", campaign_id, entry_id)
                outcomes.append(Outcome("", entry_id, "ack", NO_CHANNEL))
                continue
            decoded += [(entry_id, *member) for member in members]
        claims = await self.campaigns.claim(campaign_id, [d[1] for d in decoded])
        now = self.clock()
        paused = await self._paused(now)
        quiet_until = None if urgent else self.quiet.next_allowed(now)
        sends: list[Awaitable[Outcome]] = []
        grouped: list[tuple[_Recipient, str, Notice]] = []  # providers without a rate limit
        for (entry_id, customer, conversations, phone, params), claim in zip(decoded, claims):
            if claim == -1:  # already finished (or not this worker's to send)
                outcomes.append(Outcome(customer, entry_id, "ack", NO_CHANNEL))
                continue
            attempts = claim if claim >= 0 else -2 - claim
            r = _Recipient(entry_id, customer, conversations, phone, params, attempts)
            cid = self._pick(conversations)
            channel = cid.partition(":")[0] if cid else NO_CHANNEL
            if cid is None:
                outcomes.append(Outcome(customer, entry_id, "skipped", NO_CHANNEL, "no_channel",
                                        attempts))
            elif quiet_until is not None and quiet_until > now:
                outcomes.append(Outcome(customer, entry_id, "held", channel, "quiet_hours",
                                        attempts, when=quiet_until, payload=r.payload))
            elif paused.get(channel, 0.0) > now:
                outcomes.append(Outcome(customer, entry_id, "held", channel, "throttled",
                                        attempts, when=paused[channel], payload=r.payload))
            else:
                notice = Notice(notice_kind, params, urgent, notice_key(campaign_id, customer))
                if self.config.rates.get(channel) is None:
                    grouped.append((r, cid, notice))
                else:
                    sends.append(self._send(r, cid, notice))
        for start in range(0, len(grouped), self.config.concurrency):
            outcomes += await self._send_group(grouped[start:start + self.config.concurrency])
        if sends:
            outcomes += await asyncio.gather(*sends)
        await self.campaigns.finish(campaign_id, outcomes, self.config.failures_kept, self.clock())
        for (channel, state), n in Counter((o.channel, o.state) for o in outcomes
                                           if o.state != "ack").items():
            OUTCOMES.labels(kind, channel, state).inc(n)

    def _pick(self, conversations: Sequence[str]) -> str | None:
        """The first conversation whose channel this process can send to."""
        channels = self.deliverer.channels
        for cid in conversations:
            channel, _, user = cid.partition(":")
            if user and channel in channels:
                return cid
        return None

    def _fallback(self, r: _Recipient, failed_cid: str) -> str | None:
        """The SMS conversation to try after a permanent WeChat failure, if any."""
        if "sms" not in self.deliverer.channels:
            return None
        for cid in r.conversations:
            if cid.startswith("sms:") and cid != failed_cid:
                return cid
        return f"sms:{r.phone}" if r.phone else None

    async def _paused(self, now: float) -> dict[str, float]:
        channels = list(self.deliverer.channels)
        values = await self.redis.mget([PAUSE_KEY.format(c) for c in channels])
        return {c: float(redis_text(v)) for c, v in zip(channels, values) if v is not None}

    async def _pause(self, channel: str, until: float) -> None:
        now = self.clock()
        self._paused_until[channel] = until
        await self.redis.set(PAUSE_KEY.format(channel), repr(until),
                             px=max(1, int((until - now) * 1000)))
        log.warning("broadcast: %s throttled us; paused for every worker for %.0f s", channel,
                    until - now)

    async def _token(self, channel: str) -> None:
        """Wait for a token of the provider's shared bucket (BROADCAST_RATES)."""
        rate = self.config.rates.get(channel)
        if rate is None:
            return
        while True:
            verdict = await self._buckets.take([Bucket(channel, rate)])
            if verdict.allowed:
                return
            await asyncio.sleep(min(max(verdict.retry_after, 0.001), 1.0))

    async def _send_group(self, group: Sequence[tuple[_Recipient, str, Notice]]) -> list[Outcome]:
        """Deliver a group at once (``Deliverer.deliver_notices``: the batch shares its Redis
        work), then the WeChat→SMS fallbacks one by one."""
        held, going = [], []
        now = self.clock()
        for r, cid, notice in group:
            until = self._paused_until.get(cid.partition(":")[0], 0.0)
            if until > now:  # paused by a send of this process since the batch began
                held.append(Outcome(r.customer, r.entry_id, "held", cid.partition(":")[0],
                                    "throttled", r.attempts, when=until, payload=r.payload))
            else:
                going.append((r, cid, notice))
        if not going:
            return held
        results = await self.deliverer.deliver_notices([(cid, notice) for _r, cid, notice in going])
        outcomes: list[Outcome] = []
        fallbacks: list[Awaitable[Outcome]] = []
        for (r, cid, notice), result in zip(going, results):
            fallback = self._fallback(r, cid) if cid.startswith("wechat:") and _permanent(result) else None
            if fallback is not None:
                fallbacks.append(self._fall_back(r, fallback, notice))
            else:  # awaited in place: it only waits on Redis to pause a provider
                outcomes.append(await self._outcome(r, cid, result))
        if fallbacks:
            outcomes += await asyncio.gather(*fallbacks)
        return held + outcomes

    async def _fall_back(self, r: _Recipient, cid: str, notice: Notice) -> Outcome:
        async with self._in_flight:
            await self._token("sms")
            result = await self.deliverer.deliver(cid, notice, "notice")
            return await self._outcome(r, cid, result, fallback=True)

    async def _send(self, r: _Recipient, cid: str, notice: Notice) -> Outcome:
        async with self._in_flight:
            channel = cid.partition(":")[0]
            until = self._paused_until.get(channel, 0.0)
            if until > self.clock():  # paused by a send of this process since the batch began
                return Outcome(r.customer, r.entry_id, "held", channel, "throttled", r.attempts,
                               when=until, payload=r.payload)
            await self._token(channel)
            result = await self.deliverer.deliver(cid, notice, "notice")
            fallback = self._fallback(r, cid) if channel == "wechat" and _permanent(result) else None
        if fallback is not None:
            return await self._fall_back(r, fallback, notice)
        return await self._outcome(r, cid, result)

    async def _outcome(self, r: _Recipient, cid: str, result: DeliveryResult,
                       fallback: bool = False) -> Outcome:
        channel = cid.partition(":")[0]
        now = self.clock()
        if result.status == "queued" and channel == "sms":
            # In the SMS outbox but not sent yet (its rules, or held by a worker that died):
            # asked again later with the same key, which takes it over once it is due.
            when = result.when if result.when and result.when > now else now + SMS_RECHECK_SECONDS
            return Outcome(r.customer, r.entry_id, "held", channel, "sms_queued", r.attempts,
                           when=when, payload=r.payload)
        if result.status in ("sent", "queued"):
            return Outcome(r.customer, r.entry_id, "sent", channel, "fallback" if fallback else "",
                           r.attempts)
        if result.status == "skipped":
            return Outcome(r.customer, r.entry_id, "skipped", channel, result.reason or "skipped",
                           r.attempts)
        if result.reason == "throttled":
            until = result.when if result.when and result.when > now else now + self.config.throttle_seconds
            await self._pause(channel, until)
            return Outcome(r.customer, r.entry_id, "held", channel, "throttled", r.attempts,
                           when=until, payload=r.payload)
        attempts = r.attempts + 1
        if result.retry and attempts < self.config.max_attempts:
            delay = min(RETRY_BASE_SECONDS * 2 ** r.attempts, RETRY_MAX_SECONDS)
            return Outcome(r.customer, r.entry_id, "held", channel, "retry", attempts,
                           when=now + delay, payload=r.payload)
        reason = result.reason or "failed"
        return Outcome(r.customer, r.entry_id, "failed", channel, reason, attempts,
                       failure=f"{mask_account(r.customer)} {log_id(cid)} {reason}")


def _permanent(result: DeliveryResult) -> bool:
    """A WeChat result after which only another channel can reach the customer."""
    return ((result.status == "failed" and not result.retry)
            or (result.status == "skipped" and result.reason == "not_following"))


class ReportConsumer:
    """Applies the channels' delivery reports of broadcast notices (``pd:notice:reports``)."""

    def __init__(self, redis: Any, failures_kept: int = 20, consumer: str | None = None,
                 stream: str = REPORTS_STREAM, idle_seconds: float = 60.0) -> None:
        self.redis = redis
        self.campaigns = Campaigns(redis)
        self.failures_kept = failures_kept
        self.consumer = consumer or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stream = stream
        self.idle_seconds = idle_seconds
        self._group_ready = False

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.stream, REPORTS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def run_once(self, count: int = 500, block_ms: int | None = None) -> int:
        """Apply one batch of reports (stale ones of a stopped consumer first); returns how
        many entries were read."""
        await self._ensure_group()
        claimed = await self.redis.xautoclaim(self.stream, REPORTS_GROUP, self.consumer,
                                              int(self.idle_seconds * 1000), start_id="0-0",
                                              count=count)
        entries = list(claimed[1])
        if not entries:
            reply = await self.redis.xreadgroup(REPORTS_GROUP, self.consumer, {self.stream: ">"},
                                                count=count, block=block_ms)
            entries = list(reply[0][1]) if reply else []
        by_campaign: dict[str, list[tuple[str, str, str]]] = {}
        for _entry_id, fields in entries:
            if not fields:
                continue
            f = {redis_text(k): redis_text(v) for k, v in fields.items()}
            parsed = parse_notice_key(f.get("key") or "")
            status = f.get("status")
            if parsed is None or status not in ("delivered", "undelivered"):
                continue
            campaign_id, customer = parsed
            line = f"{mask_account(customer)} {f.get('channel') or '?'} undelivered {f.get('code') or ''}"
            by_campaign.setdefault(campaign_id, []).append((customer, status, line.strip()))
        for campaign_id, reports in by_campaign.items():
            await self.campaigns.apply_reports(campaign_id, reports, self.failures_kept)
        if entries:
            await self.redis.xack(self.stream, REPORTS_GROUP, *[e[0] for e in entries])
        return len(entries)

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Follow the reports until ``stop`` is set (or cancelled)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.run_once(block_ms=1000)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("broadcast delivery reports: Redis failed (%s)", type(exc).__name__)
                self._group_ready = False
                await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def following_reports(redis: Any, failures_kept: int) -> AsyncIterator[ReportConsumer]:
    """A :class:`ReportConsumer` running in the background for the duration of the block."""
    consumer = ReportConsumer(redis, failures_kept)
    task = asyncio.create_task(consumer.run_forever())
    try:
        yield consumer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
