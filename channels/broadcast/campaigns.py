"""Campaigns in Redis: the plan, one state per recipient, the work stream and the counters.

One campaign's keys share the hash tag ``{<campaign id>}``, so every script below touches one
Redis Cluster slot:

- ``pd:bc:{C}:meta``: hash, the plan (kind, stage, notice_kind, urgent, title, subject as JSON)
  and the campaign's ``state`` (``planning`` → ``running`` → ``done``), ``planned`` ("1" once the
  audience was read whole), times;
- ``pd:bc:{C}:state``: hash, customer (户号) → ``state|channel|reason|attempts``;
- ``pd:bc:{C}:queue``: stream of the recipients to send, one entry per batch of up to
  ``BROADCAST_BATCH`` recipients (field ``b``: ``{"m": parameters shared by the batch, "r":
  [[customer, [conversations], phone, {parameters of its own}], ...]}``), read by the workers
  through the consumer group ``workers``; an entry is acknowledged once all its recipients are
  finished (one script), so a worker that dies leaves the whole entry pending;
- ``pd:bc:{C}:held`` (zset customer → when) and ``pd:bc:{C}:payload`` (hash customer → the
  recipient as JSON): recipients waiting (quiet hours, a paused provider, a retry), put back on
  the stream in batches when due;
- ``pd:bc:{C}:counts``: hash of counters kept in the same scripts as the states, so a report
  costs the same for ten recipients or a million;
- ``pd:bc:{C}:failures``: the first failures (masked), capped;
- ``pd:bc:{C}:early``: delivery reports that arrived before the send was recorded.

``pd:bc:campaigns`` (zset campaign id → creation time) lists the campaigns.

Recipient states: ``planned`` (on the stream) → ``sending`` (a worker has it) → ``sent`` (handed
to the channel; later ``delivered`` / ``undelivered`` from the delivery reports), ``skipped`` or
``failed`` (final, with a reason), or ``held`` (waiting, back to ``planned`` when due). Each
transition is one Lua script per batch; a recipient is counted when, and only when, its state
changes, so the counters and the states agree whatever crashes in between. Planning adds a
customer only if it has no state yet (``HSETNX``): planning again adds nobody twice. A worker
finishes a recipient only from ``sending``, and the stream entry is acknowledged in the same
script. An entry whose worker died stays pending in the group and is taken over
(``XAUTOCLAIM``) with its state still ``sending``: it is delivered again with the same
``Notice.key`` (the channels drop a key they already sent), never a second time after ``sent``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from redis.exceptions import ResponseError

from channels.redis_text import redis_text

CAMPAIGNS_KEY = "pd:bc:campaigns"
GROUP = "workers"
FINAL = frozenset({"sent", "delivered", "undelivered", "skipped", "failed"})
NO_CHANNEL = "none"  # the channel of a recipient skipped before any channel was chosen

_META_FIELDS = ("campaign_id", "kind", "stage", "notice_kind", "urgent", "title", "subject")

# State values are "state|channel|reason|attempts"; this Lua helper splits one.
_PARSE = """
local function parse(v)
  if not v then return nil, '', '', 0 end
  local s, ch, r, a = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return s, ch, r, tonumber(a) or 0
end
local function done_check(meta, counts, now)
  if redis.call('HGET', meta, 'planned') == '1'
     and (tonumber(redis.call('HGET', counts, 'open')) or 0) <= 0
     and redis.call('HGET', meta, 'state') ~= 'done' then
    redis.call('HSET', meta, 'state', 'done', 'finished_at', now)
  end
end
"""

# KEYS: meta, state, queue, counts. ARGV: now, batch size, the batch's shared parameters (JSON),
# then per recipient: customer, member (see encode_member), skip reason ("" = to send). Adds the
# customers that have no state yet, those to send in stream entries of up to batch size
# recipients; returns how many were added.
_PLAN = _PARSE + """
local size, shared = tonumber(ARGV[2]), ARGV[3]
local added, members, sending = 0, {}, 0
local function flush()
  if #members > 0 then
    redis.call('XADD', KEYS[3], '*', 'b', '{"m":' .. shared .. ',"r":[' .. table.concat(members, ',') .. ']}')
    members = {}
  end
end
for i = 4, #ARGV, 3 do
  local customer, member, skip = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local value = 'planned|||0'
  if skip ~= '' then value = 'skipped|none|' .. skip .. '|0' end
  if redis.call('HSETNX', KEYS[2], customer, value) == 1 then
    added = added + 1
    if skip == '' then
      members[#members + 1] = member
      sending = sending + 1
      if #members >= size then flush() end
    else
      redis.call('HINCRBY', KEYS[4], 'c:none:skipped:' .. skip, 1)
    end
  end
end
flush()
if added > 0 then
  redis.call('HINCRBY', KEYS[4], 'audience', added)
  if sending > 0 then redis.call('HINCRBY', KEYS[4], 'open', sending) end
  if redis.call('HGET', KEYS[1], 'state') == 'done' then
    redis.call('HSET', KEYS[1], 'state', 'running')
  end
end
return added
"""

# KEYS: state. ARGV: customers. planned/sending → sending; returns per customer the attempts
# so far, -1 when it is not to be sent (final, held or unknown), -2 - attempts when it was
# already "sending" (taken over from a worker that died: sent again with the same key).
_CLAIM = _PARSE + """
local out = {}
for i, customer in ipairs(ARGV) do
  local s, ch, r, a = parse(redis.call('HGET', KEYS[1], customer))
  if s == 'planned' then
    redis.call('HSET', KEYS[1], customer, 'sending|' .. ch .. '|' .. r .. '|' .. a)
    out[i] = a
  elseif s == 'sending' then
    out[i] = -2 - a
  else
    out[i] = -1
  end
end
return out
"""

# KEYS: meta, state, queue, counts, failures, held, payload, early. ARGV: now, group,
# failures cap, then per recipient 8 values: customer, entry id, new state (sent, skipped,
# failed, held), channel, reason, attempts, when (held) or failure line, payload (held).
# Applies only to recipients still "sending"; acknowledges and deletes every entry (once).
_FINISH = _PARSE + """
local now, group, cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local finished, acked = 0, {}
for i = 4, #ARGV, 8 do
  local customer, id, new, ch, reason, attempts = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  local extra, payload = ARGV[i+6], ARGV[i+7]
  local s = parse(redis.call('HGET', KEYS[2], customer))
  if s == 'sending' then
    if new == 'held' then
      redis.call('HSET', KEYS[2], customer, 'held|' .. ch .. '|' .. reason .. '|' .. attempts)
      redis.call('ZADD', KEYS[6], tonumber(extra), customer)
      redis.call('HSET', KEYS[7], customer, payload)
      redis.call('HINCRBY', KEYS[4], 'held:' .. reason, 1)
    else
      local final = new
      if new == 'sent' then
        redis.call('HINCRBY', KEYS[4], 'c:' .. ch .. ':sent', 1)
        if reason ~= '' then redis.call('HINCRBY', KEYS[4], 'c:' .. ch .. ':sent:' .. reason, 1) end
        local early = redis.call('HGET', KEYS[8], customer)
        if early then
          final = early
          redis.call('HINCRBY', KEYS[4], 'c:' .. ch .. ':' .. early, 1)
          redis.call('HDEL', KEYS[8], customer)
        end
      else
        redis.call('HINCRBY', KEYS[4], 'c:' .. ch .. ':' .. new .. ':' .. reason, 1)
        if new == 'failed' and redis.call('LLEN', KEYS[5]) < cap then
          redis.call('RPUSH', KEYS[5], extra)
        end
      end
      redis.call('HSET', KEYS[2], customer, final .. '|' .. ch .. '|' .. reason .. '|' .. attempts)
      redis.call('HINCRBY', KEYS[4], 'open', -1)
      finished = finished + 1
    end
  end
  if not acked[id] then
    acked[id] = true
    redis.call('XACK', KEYS[3], group, id)
    redis.call('XDEL', KEYS[3], id)
  end
end
done_check(KEYS[1], KEYS[4], now)
return finished
"""

# KEYS: state, held, payload, queue, counts. ARGV: now, limit, batch size. Puts the held
# recipients that are due back on the stream (state planned), in entries of up to batch size;
# returns how many.
_RESUME = _PARSE + """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local size, members = tonumber(ARGV[3]), {}
local function flush()
  if #members > 0 then
    redis.call('XADD', KEYS[4], '*', 'b', '{"m":{},"r":[' .. table.concat(members, ',') .. ']}')
    members = {}
  end
end
for _, customer in ipairs(due) do
  local s, ch, r, a = parse(redis.call('HGET', KEYS[1], customer))
  local payload = redis.call('HGET', KEYS[3], customer)
  if s == 'held' and payload then
    redis.call('HSET', KEYS[1], customer, 'planned|' .. ch .. '||' .. a)
    redis.call('HINCRBY', KEYS[5], 'held:' .. r, -1)
    members[#members + 1] = payload
    if #members >= size then flush() end
  end
  redis.call('ZREM', KEYS[2], customer)
  redis.call('HDEL', KEYS[3], customer)
end
flush()
return #due
"""

# KEYS: state, counts, early, failures. ARGV: cap, then per report: customer, status
# (delivered|undelivered), failure line. sent → delivered/undelivered (once); a report for a
# recipient still "sending" is kept and applied when the send is recorded.
_REPORT = _PARSE + """
local cap = tonumber(ARGV[1])
local applied = 0
for i = 2, #ARGV, 3 do
  local customer, status, line = ARGV[i], ARGV[i+1], ARGV[i+2]
  local s, ch, r, a = parse(redis.call('HGET', KEYS[1], customer))
  if s == 'sent' then
    redis.call('HSET', KEYS[1], customer, status .. '|' .. ch .. '|' .. r .. '|' .. a)
    redis.call('HINCRBY', KEYS[2], 'c:' .. ch .. ':' .. status, 1)
    if status == 'undelivered' and redis.call('LLEN', KEYS[4]) < cap then
      redis.call('RPUSH', KEYS[4], line)
    end
    applied = applied + 1
  elseif s == 'sending' then
    redis.call('HSET', KEYS[3], customer, status)
  end
end
return applied
"""

# KEYS: meta, counts. ARGV: now. Marks the audience complete (done when nothing is open).
_PLANNED = _PARSE + """
redis.call('HSET', KEYS[1], 'planned', '1', 'planned_at', ARGV[1])
if redis.call('HGET', KEYS[1], 'state') == 'planning' then
  redis.call('HSET', KEYS[1], 'state', 'running')
end
done_check(KEYS[1], KEYS[2], ARGV[1])
return 1
"""


def key(campaign_id: str, part: str) -> str:
    """The Redis key of one part of a campaign (``meta``, ``state``, ``queue``, ...)."""
    return f"pd:bc:{{{campaign_id}}}:{part}"


@dataclass(frozen=True)
class Outcome:
    """What a worker decided for one recipient it claimed (see :meth:`Campaigns.finish`)."""

    customer: str
    entry_id: str
    state: str              # sent | skipped | failed | held
    channel: str
    reason: str = ""
    attempts: int = 0
    when: float = 0.0       # held: until when
    failure: str = ""       # failed: the masked line kept for the report
    payload: str = ""       # held: the recipient (encode_member), put back on the stream when due


@dataclass
class Counters:
    """A campaign's counters as read from Redis."""

    values: dict[str, int] = field(default_factory=dict)

    def get(self, name: str) -> int:
        return self.values.get(name, 0)


Member = tuple[str, tuple[str, ...], Optional[str], dict[str, str]]  # customer, conversations, phone, params


def encode_member(customer: str, conversations: Sequence[str], phone: str | None,
                  params: Mapping[str, str], shared: Mapping[str, str] | None = None) -> str:
    """One recipient of a stream entry, as compact JSON: ``[customer, [conversations], phone,
    {parameters that differ from the entry's shared ones}]`` (and the shared names it lacks)."""
    shared = shared or {}
    own = {k: v for k, v in params.items() if shared.get(k) != v}
    lacks = [k for k in shared if k not in params]
    return json.dumps([customer, list(conversations), phone or "", own, *([lacks] if lacks else [])],
                      ensure_ascii=False, separators=(",", ":"))


def encode_shared(params: Mapping[str, str]) -> str:
    """The parameters a stream entry's recipients share, as JSON (see :func:`encode_member`)."""
    return json.dumps(dict(params), ensure_ascii=False, separators=(",", ":"))


def decode_entry(payload: str) -> list[Member]:
    """The recipients of one stream entry: [(customer, conversations, phone, params)]."""
    data = json.loads(payload)
    shared = data["m"]
    out = []
    for member in data["r"]:
        if isinstance(member, dict):  # held before entries held batches: {"c", "v", "p", "m"}
            member = [member["c"], member["v"], member["p"], member["m"]]
        params = {**shared, **member[3]}
        for name in (member[4] if len(member) > 4 else ()):
            params.pop(name, None)
        out.append((str(member[0]), tuple(member[1]), member[2] or None, params))
    return out


class Campaigns:
    """The campaigns stored in one Redis (see the module docstring)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._plan = redis.register_script(_PLAN)
        self._claim = redis.register_script(_CLAIM)
        self._finish = redis.register_script(_FINISH)
        self._resume = redis.register_script(_RESUME)
        self._report = redis.register_script(_REPORT)
        self._planned = redis.register_script(_PLANNED)

    # ---- campaigns ---------------------------------------------------------------------------

    async def create(self, plan: Any, now: float | None = None) -> bool:
        """Store ``plan`` (a :class:`~channels.broadcast.sources.CampaignPlan`) unless its
        campaign exists; True when created now. Its stream and consumer group exist after."""
        now = time.time() if now is None else now
        meta = key(plan.campaign_id, "meta")
        created = bool(await self.redis.hsetnx(meta, "campaign_id", plan.campaign_id))
        if created:
            await self.redis.hset(meta, mapping={
                "kind": plan.kind, "stage": plan.stage, "notice_kind": plan.notice_kind,
                "urgent": "1" if plan.urgent else "0", "title": plan.title,
                "subject": json.dumps(dict(plan.subject), ensure_ascii=False),
                "state": "planning", "planned": "0", "created_at": repr(now)})
            await self.redis.zadd(CAMPAIGNS_KEY, {plan.campaign_id: now}, nx=True)
        try:
            await self.redis.xgroup_create(key(plan.campaign_id, "queue"), GROUP, id="0",
                                           mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return created

    async def meta(self, campaign_id: str) -> dict[str, str] | None:
        """The campaign's plan and state, None when unknown."""
        raw = await self.redis.hgetall(key(campaign_id, "meta"))
        if not raw:
            return None
        return {redis_text(k): redis_text(v) for k, v in raw.items()}

    async def ids(self, limit: int = 1000) -> list[str]:
        """Campaign ids, newest first."""
        return [redis_text(m) for m in await self.redis.zrevrange(CAMPAIGNS_KEY, 0, limit - 1)]

    async def unfinished(self, limit: int = 1000) -> list[str]:
        """Ids of the campaigns not done yet (newest first)."""
        ids = await self.ids(limit)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for campaign_id in ids:
                pipe.hget(key(campaign_id, "meta"), "state")
            states = await pipe.execute()
        return [c for c, s in zip(ids, states) if s is not None and redis_text(s) != "done"]

    async def counters(self, campaign_id: str) -> Counters:
        raw = await self.redis.hgetall(key(campaign_id, "counts"))
        return Counters({redis_text(k): int(v) for k, v in raw.items()})

    async def failures(self, campaign_id: str) -> list[str]:
        return [redis_text(v) for v in await self.redis.lrange(key(campaign_id, "failures"), 0, -1)]

    async def held_next(self, campaign_id: str) -> float | None:
        """When the first held recipient is due, None when none is held."""
        first = await self.redis.zrange(key(campaign_id, "held"), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def states(self, campaign_id: str, customers: Sequence[str]) -> list[str | None]:
        """The state names of ``customers`` (None: not in the campaign)."""
        if not customers:
            return []
        values = await self.redis.hmget(key(campaign_id, "state"), list(customers))
        return [None if v is None else redis_text(v).split("|", 1)[0] for v in values]

    async def recipient(self, campaign_id: str, customer: str) -> dict[str, Any] | None:
        """One recipient's ``{state, channel, reason, attempts}``, None when not in it."""
        value = await self.redis.hget(key(campaign_id, "state"), customer)
        if value is None:
            return None
        state, channel, reason, attempts = redis_text(value).split("|")
        return {"state": state, "channel": channel, "reason": reason, "attempts": int(attempts)}

    # ---- planning -----------------------------------------------------------------------------

    async def add(self, campaign_id: str, recipients: Iterable[tuple[str, str, str]],
                  now: float | None = None, *, batch: int = 100, shared: str = "{}") -> int:
        """Add (customer, member (:func:`encode_member` against ``shared``), skip reason or "")
        to the audience, each customer once whatever happened before, those to send in stream
        entries of up to ``batch``; returns how many were new."""
        args: list[str] = [repr(time.time() if now is None else now), str(max(1, batch)), shared]
        for customer, member, skip in recipients:
            args += [customer, member, skip]
        if len(args) == 3:
            return 0
        return int(await self._plan(keys=[key(campaign_id, p) for p in
                                          ("meta", "state", "queue", "counts")], args=args))

    async def planned(self, campaign_id: str, now: float | None = None) -> None:
        """The whole audience was read: the campaign is done once nothing is open."""
        await self._planned(keys=[key(campaign_id, "meta"), key(campaign_id, "counts")],
                            args=[repr(time.time() if now is None else now)])

    async def start_planning(self, campaign_id: str) -> None:
        """The audience is being read (again): not done before it was read whole."""
        await self.redis.hset(key(campaign_id, "meta"), "planned", "0")

    # ---- work ---------------------------------------------------------------------------------

    async def read(self, campaign_id: str, consumer: str, count: int,
                   block_ms: int | None = None) -> list[tuple[str, str]]:
        """Up to ``count`` new entries for ``consumer``: [(entry id, payload)] (see
        :func:`decode_entry`)."""
        reply = await self.redis.xreadgroup(GROUP, consumer, {key(campaign_id, "queue"): ">"},
                                            count=count, block=block_ms)
        return stream_entries(reply[0][1] if reply else [])

    async def take_over(self, campaign_id: str, consumer: str, idle_seconds: float,
                        count: int) -> list[tuple[str, str]]:
        """Entries pending with another consumer for ``idle_seconds`` (a worker that died)."""
        reply = await self.redis.xautoclaim(key(campaign_id, "queue"), GROUP, consumer,
                                            int(idle_seconds * 1000), start_id="0-0", count=count)
        return stream_entries(reply[1])

    async def pending(self, campaign_id: str) -> int:
        """Entries read by some worker and not finished yet."""
        info = await self.redis.xpending(key(campaign_id, "queue"), GROUP)
        return int(info["pending"] if isinstance(info, dict) else info[0])

    async def claim(self, campaign_id: str, customers: Sequence[str]) -> list[int]:
        """planned (or sending: taken over) → sending; see ``_CLAIM`` for the values."""
        if not customers:
            return []
        return [int(v) for v in await self._claim(keys=[key(campaign_id, "state")],
                                                  args=list(customers))]

    async def finish(self, campaign_id: str, outcomes: Sequence[Outcome], failures_cap: int,
                     now: float | None = None) -> int:
        """Record the outcomes (from ``sending`` only) and acknowledge their entries."""
        if not outcomes:
            return 0
        args: list[str] = [repr(time.time() if now is None else now), GROUP, str(failures_cap)]
        for o in outcomes:
            extra = repr(o.when) if o.state == "held" else o.failure
            args += [o.customer, o.entry_id, o.state, o.channel, o.reason, str(o.attempts),
                     extra, o.payload]
        return int(await self._finish(
            keys=[key(campaign_id, p) for p in ("meta", "state", "queue", "counts", "failures",
                                                "held", "payload", "early")], args=args))

    async def resume_due(self, campaign_id: str, now: float | None = None,
                         limit: int = 1000, batch: int = 100) -> int:
        """Put the held recipients that are due back on the stream (entries of up to ``batch``)."""
        return int(await self._resume(
            keys=[key(campaign_id, p) for p in ("state", "held", "payload", "queue", "counts")],
            args=[repr(time.time() if now is None else now), limit, max(1, batch)]))

    async def apply_reports(self, campaign_id: str, reports: Sequence[tuple[str, str, str]],
                            failures_cap: int) -> int:
        """Delivery reports (customer, delivered|undelivered, failure line) of one campaign."""
        if not reports:
            return 0
        args: list[str] = [str(failures_cap)]
        for customer, status, line in reports:
            args += [customer, status, line]
        return int(await self._report(
            keys=[key(campaign_id, p) for p in ("state", "counts", "early", "failures")],
            args=args))


def stream_entries(raw: Sequence[Any]) -> list[tuple[str, str]]:
    """[(entry id, payload)] of a stream reply (entries deleted meanwhile have no payload). An
    entry of one recipient (field ``r``, written before entries held batches) comes as a batch
    of one."""
    out = []
    for entry_id, fields in raw:
        if fields is None:  # deleted while pending (XAUTOCLAIM reports it so)
            continue
        payload = fields.get(b"b", fields.get("b"))
        if payload is None and (single := fields.get(b"r", fields.get("r"))) is not None:
            payload = _single_as_batch(redis_text(single))
        out.append((redis_text(entry_id), redis_text(payload) if payload is not None else ""))
    return out


def _single_as_batch(payload: str) -> str:
    """An older one-recipient entry (``{"c", "v", "p", "m"}``) as a batch of one."""
    try:
        d = json.loads(payload)
        member = encode_member(str(d["c"]), [str(v) for v in d["v"]], str(d["p"]) or None, d["m"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return payload  # malformed: the worker drops it
    return '{"m":{},"r":[' + member + "]}"


def plan_from_meta(meta: Mapping[str, str]) -> Any:
    """The :class:`~channels.broadcast.sources.CampaignPlan` a campaign was created from,
    rebuilt from its stored fields (to read its audience again after planning stopped)."""
    from channels.broadcast.sources import CampaignPlan  # the sources import the backends

    return CampaignPlan(campaign_id=meta["campaign_id"], kind=meta["kind"], stage=meta["stage"],
                        notice_kind=meta["notice_kind"], urgent=meta.get("urgent") == "1",
                        title=meta.get("title", ""),
                        subject={str(k): str(v) for k, v in
                                 json.loads(meta.get("subject") or "{}").items()})
