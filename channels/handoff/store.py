"""Hand-off state in Redis, shared by every gateway instance (the contract of the console).

Keys (all times are unix seconds as text, e.g. ``"1764316800.125"``):

* ``pd:{handoff}:conv:<cid>`` hash: ``handoff_id, state, queue, agent, reason, channel,
  customer_type, account, created_at, claimed_at, closed_at`` (``account`` is raw: mask it when
  shown). ``state`` is ``waiting`` (in a queue), ``active`` (an agent has it), ``rating`` (closed,
  the customer was asked for a 1-5 score) or ``closed``. While waiting or active the hash has no
  expiry; afterwards it lives ``CLOSED_TTL_SECONDS``.
* ``pd:{handoff}:queue:<queue>`` sorted set of the waiting conversation ids, scored by
  ``created_at``; ``pd:{handoff}:queues`` the set of every queue name ever used;
  ``pd:{handoff}:active`` sorted set of the active conversation ids, scored by ``claimed_at``.
* ``pd:{handoff}:msgs:<cid>`` stream of the transcript: ``sender`` (customer|agent|bot|system),
  ``text``, ``at``, ``agent``.
* ``pd:{handoff}:events`` stream of every change and message: ``type`` (requested, taken_over,
  claimed, transferred, closed, message, rated, finished, cancelled), ``cid``, ``queue``, ``agent``,
  ``handoff_id``, ``at`` and per type more (``sender``/``text``/``msg_id`` of a message,
  ``score``/``comment`` of a rating, ``from_queue``/``from_agent`` of a transfer). Each gateway
  instance tails it (:meth:`HandoffStore.events`) to push live updates to its agents.
* ``pd:{handoff}:ratings`` stream of every rating (``cid, handoff_id, agent, queue, score,
  comment, at``), the durable record.
* ``pd:{handoff}:stats:<yyyy-mm-dd>`` hash of the day's counters (the day in the store's time
  zone): ``requests``, ``hour:<HH>`` (hand-offs started per hour), ``claims``,
  ``claim_wait_ms`` (sum), ``rating:agent:<agent>:<score>``, ``rating:queue:<queue>:<score>``;
  ``…:conversations`` and ``…:handed`` HyperLogLogs of the conversations that had a turn and of
  those handed off that day (the containment rate, see :meth:`HandoffStore.stats`).

Every transition is one Lua script, so two instances racing (two agents claiming one
conversation) cannot both win. The scripts name the queue keys they derive from the hash, so
every key shares the hash tag ``{handoff}``: on a Redis Cluster all hand-off state sits on one
slot (hand-offs are a few per second at most). Keys of the earlier names (``pd:handoff:*``)
move to these on the gateway's start (:meth:`HandoffStore.migrate_legacy_keys`); the actions'
request stream ``pd:handoff:requests`` keeps its name (nothing else is touched with it).
"""
from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from channels.key_migration import move_keys
from channels.redis_text import redis_text

PREFIX = "pd:{handoff}:"
LEGACY_PREFIX = "pd:handoff:"  # before the Cluster hash tag
REQUESTS_STREAM = "pd:handoff:requests"  # the actions' requests: one key, keeps its name
EVENTS_KEY = PREFIX + "events"
RATINGS_KEY = PREFIX + "ratings"
QUEUES_KEY = PREFIX + "queues"
ACTIVE_KEY = PREFIX + "active"
EVENTS_MAXLEN = 100_000
RATINGS_MAXLEN = 100_000
MESSAGES_MAXLEN = 1000
CLOSED_TTL_SECONDS = 7 * 86400
MESSAGES_TTL_SECONDS = 30 * 86400
STATS_TTL_SECONDS = 400 * 86400
SHANGHAI = ZoneInfo("Asia/Shanghai")

STATES = ("waiting", "active", "rating", "closed")
SENDERS = ("customer", "agent", "bot", "system")
CUSTOMER_TYPES = ("residential", "commercial", "enterprise")
OPEN_STATES = ("waiting", "active")



def conv_key(cid: str) -> str:
    return f"{PREFIX}conv:{cid}"


def queue_key(queue: str) -> str:
    return f"{PREFIX}queue:{queue}"


def messages_key(cid: str) -> str:
    return f"{PREFIX}msgs:{cid}"


def stats_key(day: str) -> str:
    return f"{PREFIX}stats:{day}"


# KEYS: conv, events, queues, stats, handed; ARGV: cid, handoff_id, queue, reason, channel,
# customer_type, account, now, hour, prefix, stats ttl, state (waiting|active), agent, type,
# events maxlen. Returns 1 when opened, 0 when the conversation already had an open hand-off.
_REQUEST = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'waiting' or state == 'active' then return 0 end
local claimed = ''
if ARGV[12] == 'active' then claimed = ARGV[8] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'handoff_id', ARGV[2], 'state', ARGV[12], 'queue', ARGV[3],
  'agent', ARGV[13], 'reason', ARGV[4], 'channel', ARGV[5], 'customer_type', ARGV[6],
  'account', ARGV[7], 'created_at', ARGV[8], 'claimed_at', claimed, 'closed_at', '')
if ARGV[12] == 'waiting' then
  redis.call('ZADD', ARGV[10] .. 'queue:' .. ARGV[3], ARGV[8], ARGV[1])
else
  redis.call('ZADD', ARGV[10] .. 'active', ARGV[8], ARGV[1])
end
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('HINCRBY', KEYS[4], 'requests', 1)
redis.call('HINCRBY', KEYS[4], 'hour:' .. ARGV[9], 1)
redis.call('EXPIRE', KEYS[4], ARGV[11])
redis.call('PFADD', KEYS[5], ARGV[1])
redis.call('EXPIRE', KEYS[5], ARGV[11])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[15], '*', 'type', ARGV[14], 'cid', ARGV[1],
  'queue', ARGV[3], 'agent', ARGV[13], 'handoff_id', ARGV[2], 'at', ARGV[8],
  'channel', ARGV[5], 'customer_type', ARGV[6], 'reason', ARGV[4])
return 1
"""

# KEYS: conv, events, stats; ARGV: cid, agent, now, prefix, stats ttl, events maxlen.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'state') ~= 'waiting' then return 0 end
local queue = redis.call('HGET', KEYS[1], 'queue')
local created = tonumber(redis.call('HGET', KEYS[1], 'created_at')) or tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'active', 'agent', ARGV[2], 'claimed_at', ARGV[3])
redis.call('ZREM', ARGV[4] .. 'queue:' .. queue, ARGV[1])
redis.call('ZADD', ARGV[4] .. 'active', ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'claims', 1)
redis.call('HINCRBY', KEYS[3], 'claim_wait_ms', math.max(0, math.floor((tonumber(ARGV[3]) - created) * 1000)))
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'type', 'claimed', 'cid', ARGV[1],
  'queue', queue, 'agent', ARGV[2], 'handoff_id', redis.call('HGET', KEYS[1], 'handoff_id'),
  'at', ARGV[3])
return 1
"""

# KEYS: conv, events, queues; ARGV: cid, new queue ('' = same), new agent ('' = none: back to
# waiting), now, prefix, events maxlen.
_TRANSFER = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'waiting' and state ~= 'active' then return 0 end
local old_queue = redis.call('HGET', KEYS[1], 'queue')
local old_agent = redis.call('HGET', KEYS[1], 'agent')
local queue = old_queue
if ARGV[2] ~= '' then queue = ARGV[2] end
redis.call('ZREM', ARGV[5] .. 'queue:' .. old_queue, ARGV[1])
if ARGV[3] == '' then
  redis.call('HSET', KEYS[1], 'state', 'waiting', 'queue', queue, 'agent', '', 'claimed_at', '')
  local created = redis.call('HGET', KEYS[1], 'created_at')
  redis.call('ZADD', ARGV[5] .. 'queue:' .. queue, created, ARGV[1])
  redis.call('ZREM', ARGV[5] .. 'active', ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', 'active', 'queue', queue, 'agent', ARGV[3])
  if state == 'waiting' then
    redis.call('HSET', KEYS[1], 'claimed_at', ARGV[4])
    redis.call('ZADD', ARGV[5] .. 'active', ARGV[4], ARGV[1])
  end
end
redis.call('SADD', KEYS[3], queue)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'type', 'transferred', 'cid', ARGV[1],
  'queue', queue, 'agent', ARGV[3], 'handoff_id', redis.call('HGET', KEYS[1], 'handoff_id'),
  'at', ARGV[4], 'from_queue', old_queue, 'from_agent', old_agent)
return 1
"""

# KEYS: conv, events; ARGV: cid, closing agent, now, prefix, events maxlen.
_CLOSE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'waiting' and state ~= 'active' then return 0 end
local queue = redis.call('HGET', KEYS[1], 'queue')
redis.call('ZREM', ARGV[4] .. 'queue:' .. queue, ARGV[1])
redis.call('ZREM', ARGV[4] .. 'active', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'rating', 'closed_at', ARGV[3])
if redis.call('HGET', KEYS[1], 'agent') == '' then redis.call('HSET', KEYS[1], 'agent', ARGV[2]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'closed', 'cid', ARGV[1],
  'queue', queue, 'agent', ARGV[2], 'handoff_id', redis.call('HGET', KEYS[1], 'handoff_id'),
  'at', ARGV[3])
return 1
"""

# KEYS: conv, events, ratings, stats; ARGV: cid, handoff_id, score, comment, now, stats ttl,
# closed ttl, events maxlen, ratings maxlen.
_RATE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'rating' then return 0 end
if redis.call('HGET', KEYS[1], 'handoff_id') ~= ARGV[2] then return 0 end
local queue = redis.call('HGET', KEYS[1], 'queue')
local agent = redis.call('HGET', KEYS[1], 'agent')
redis.call('HSET', KEYS[1], 'state', 'closed', 'rating', ARGV[3], 'rating_comment', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('HINCRBY', KEYS[4], 'rating:agent:' .. agent .. ':' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[4], 'rating:queue:' .. queue .. ':' .. ARGV[3], 1)
redis.call('EXPIRE', KEYS[4], ARGV[6])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', 'cid', ARGV[1], 'handoff_id', ARGV[2],
  'agent', agent, 'queue', queue, 'score', ARGV[3], 'comment', ARGV[4], 'at', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'type', 'rated', 'cid', ARGV[1],
  'queue', queue, 'agent', agent, 'handoff_id', ARGV[2], 'at', ARGV[5], 'score', ARGV[3],
  'comment', ARGV[4])
return 1
"""

# KEYS: conv, events; ARGV: cid, now, closed ttl, events maxlen. Rating state → closed.
_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'rating' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'closed')
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', 'finished', 'cid', ARGV[1],
  'queue', redis.call('HGET', KEYS[1], 'queue'), 'agent', redis.call('HGET', KEYS[1], 'agent'),
  'handoff_id', redis.call('HGET', KEYS[1], 'handoff_id'), 'at', ARGV[2])
return 1
"""

# KEYS: conv, events; ARGV: cid, now, prefix, closed ttl, events maxlen, why. Open → closed
# without an agent's close (the customer took a callback ticket instead of waiting).
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'waiting' and state ~= 'active' then return 0 end
local queue = redis.call('HGET', KEYS[1], 'queue')
redis.call('ZREM', ARGV[3] .. 'queue:' .. queue, ARGV[1])
redis.call('ZREM', ARGV[3] .. 'active', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_at', ARGV[2], 'cancelled', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'cancelled', 'cid', ARGV[1],
  'queue', queue, 'agent', redis.call('HGET', KEYS[1], 'agent'),
  'handoff_id', redis.call('HGET', KEYS[1], 'handoff_id'), 'at', ARGV[2], 'why', ARGV[6])
return 1
"""

# KEYS: conv, msgs, events; ARGV: cid, sender, text, now, agent, msgs maxlen, msgs ttl,
# events maxlen. Returns the transcript entry's id.
_MESSAGE = """
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'sender', ARGV[2],
  'text', ARGV[3], 'at', ARGV[4], 'agent', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[7])
local queue = redis.call('HGET', KEYS[1], 'queue') or ''
local handoff = redis.call('HGET', KEYS[1], 'handoff_id') or ''
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'type', 'message', 'cid', ARGV[1],
  'queue', queue, 'agent', ARGV[5], 'handoff_id', handoff, 'at', ARGV[4], 'sender', ARGV[2],
  'text', ARGV[3], 'msg_id', id)
return id
"""


def _decode(mapping: Any) -> dict[str, str]:
    return {redis_text(k): redis_text(v) for k, v in (mapping or {}).items()}


class HandoffStore:
    """The hand-off state machine over Redis (see the module docstring for the keys).

    ``redis`` is a ``redis.asyncio`` client, decoding responses or not; ``clock`` gives unix
    seconds (tests pin it); ``tz`` is the time zone of the statistics' days and hours.
    """

    def __init__(self, redis: Any, *, clock: Callable[[], float] = time.time,
                 tz: dt.tzinfo = SHANGHAI) -> None:
        self._redis = redis
        self.redis = redis  # for callers that pipeline their own keys with the store's client
        self._clock = clock
        self.tz = tz
        self._request = redis.register_script(_REQUEST)
        self._claim = redis.register_script(_CLAIM)
        self._transfer = redis.register_script(_TRANSFER)
        self._close = redis.register_script(_CLOSE)
        self._rate = redis.register_script(_RATE)
        self._finish = redis.register_script(_FINISH)
        self._message = redis.register_script(_MESSAGE)
        self._cancel = redis.register_script(_CANCEL)

    def now(self) -> float:
        return self._clock()

    async def migrate_legacy_keys(self) -> int:
        """Move keys of the names before the ``{handoff}`` hash tag to the current ones (once;
        later calls find none); returns how many moved."""
        return await move_keys(self._redis, LEGACY_PREFIX, PREFIX, keep=(REQUESTS_STREAM,))

    def day(self, now: float | None = None) -> str:
        """The statistics day (``yyyy-mm-dd`` in the store's time zone) of ``now``."""
        return dt.datetime.fromtimestamp(self.now() if now is None else now, self.tz).date().isoformat()

    async def request(self, cid: str, *, queue: str, reason: str, channel: str,
                      customer_type: str, account: str) -> dict:
        """Open a waiting hand-off of ``cid`` in ``queue``; an open one (waiting or active) is
        kept as it is. Returns the record, with ``new`` (not stored): whether this call opened it."""
        return await self._open(cid, "waiting", "", "requested", queue=queue, reason=reason,
                                channel=channel, customer_type=customer_type, account=account)

    async def take_over(self, cid: str, agent: str, *, queue: str, reason: str, channel: str,
                        customer_type: str, account: str) -> dict:
        """An agent takes ``cid`` over from the console: an active hand-off held by ``agent``
        opened directly (or, if the conversation is already waiting, claimed). Returns the record
        with ``new``; the caller checks ``agent`` (someone else may hold it already)."""
        record = await self._open(cid, "active", agent, "taken_over", queue=queue, reason=reason,
                                  channel=channel, customer_type=customer_type, account=account)
        if not record["new"] and record.get("state") == "waiting" and await self.claim(cid, agent):
            record = {**(await self.get(cid) or record), "new": False}
        return record

    async def _open(self, cid: str, state: str, agent: str, kind: str, *, queue: str, reason: str,
                    channel: str, customer_type: str, account: str) -> dict:
        if not cid or not queue:
            raise ValueError("conversation id and queue are required")
        now = self.now()
        moment = dt.datetime.fromtimestamp(now, self.tz)
        day = moment.date().isoformat()
        opened = await self._request(
            keys=[conv_key(cid), EVENTS_KEY, QUEUES_KEY, stats_key(day), stats_key(day) + ":handed"],
            args=[cid, uuid.uuid4().hex[:16], queue, reason or "", channel or "",
                  customer_type or "residential", account or "", _stamp(now), f"{moment.hour:02d}",
                  PREFIX, STATS_TTL_SECONDS, state, agent, kind, EVENTS_MAXLEN])
        record = await self.get(cid) or {}
        return {**record, "new": bool(int(opened))}

    async def get(self, cid: str) -> dict | None:
        """The conversation's hand-off record (any state), or None."""
        record = _decode(await self._redis.hgetall(conv_key(cid)))
        if not record:
            return None
        record.setdefault("cid", cid)
        return record

    async def state(self, cid: str) -> str | None:
        """Just the state (one HGET): what the router asks on every message."""
        return redis_text(await self._redis.hget(conv_key(cid), "state"))

    async def waiting(self, queues: list[str]) -> list[dict]:
        """The waiting conversations of ``queues``, oldest first."""
        cids: list[tuple[float, str]] = []
        for queue in queues:
            for member, score in await self._redis.zrange(queue_key(queue), 0, -1, withscores=True):
                cids.append((float(score), redis_text(member)))
        cids.sort()
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, cid in cids:
                pipe.hgetall(conv_key(cid))
            rows = await pipe.execute() if cids else []
        records = []
        for (_, cid), row in zip(cids, rows):
            record = _decode(row)
            if record.get("state") == "waiting":
                records.append({**record, "cid": cid})
        return records

    async def active(self, agent: str | None = None) -> list[dict]:
        """The active hand-offs (held by ``agent``, or all when None), oldest claim first."""
        cids = [redis_text(m) for m in await self._redis.zrange(ACTIVE_KEY, 0, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in cids:
                pipe.hgetall(conv_key(cid))
            rows = await pipe.execute() if cids else []
        records = []
        for cid, row in zip(cids, rows):
            record = _decode(row)
            if record.get("state") == "active" and (agent is None or record.get("agent") == agent):
                records.append({**record, "cid": cid})
        return records

    async def claim(self, cid: str, agent: str) -> bool:
        """``agent`` takes a waiting conversation; atomic: of two claims exactly one wins."""
        now = self.now()
        return bool(int(await self._claim(
            keys=[conv_key(cid), EVENTS_KEY, stats_key(self.day(now))],
            args=[cid, agent, _stamp(now), PREFIX, STATS_TTL_SECONDS, EVENTS_MAXLEN])))

    async def transfer(self, cid: str, *, queue: str | None = None, agent: str | None = None) -> bool:
        """Move an open hand-off to another ``queue`` (waiting there, unless ``agent`` is given)
        and/or to ``agent`` (active, held by them). False when it is not open."""
        if not queue and not agent:
            raise ValueError("transfer needs a queue or an agent")
        return bool(int(await self._transfer(
            keys=[conv_key(cid), EVENTS_KEY, QUEUES_KEY],
            args=[cid, queue or "", agent or "", _stamp(self.now()), PREFIX, EVENTS_MAXLEN])))

    async def close(self, cid: str, agent: str) -> bool:
        """End an open hand-off (state ``rating``: the customer is asked for a score next)."""
        return bool(int(await self._close(keys=[conv_key(cid), EVENTS_KEY],
                                          args=[cid, agent, _stamp(self.now()), PREFIX, EVENTS_MAXLEN])))

    async def record_rating(self, cid: str, handoff_id: str, score: int, comment: str) -> bool:
        """Store the customer's 1-5 score of hand-off ``handoff_id`` (state rating → closed)
        against its agent, queue and conversation. False (nothing stored) when that hand-off is
        not waiting for a rating (already rated, another hand-off since)."""
        if not 1 <= int(score) <= 5:
            raise ValueError("score must be 1 to 5")
        now = self.now()
        return bool(int(await self._rate(
            keys=[conv_key(cid), EVENTS_KEY, RATINGS_KEY, stats_key(self.day(now))],
            args=[cid, handoff_id, int(score), (comment or "")[:200], _stamp(now), STATS_TTL_SECONDS,
                  CLOSED_TTL_SECONDS, EVENTS_MAXLEN, RATINGS_MAXLEN])))

    async def finish(self, cid: str) -> bool:
        """The customer answered something other than a score: state rating → closed."""
        return bool(int(await self._finish(keys=[conv_key(cid), EVENTS_KEY],
                                           args=[cid, _stamp(self.now()), CLOSED_TTL_SECONDS,
                                                 EVENTS_MAXLEN])))

    async def cancel(self, cid: str, why: str) -> bool:
        """End an open hand-off without a rating (state closed; ``why``, e.g. ``callback``, is
        kept in the record and the ``cancelled`` event). False when it was not open."""
        return bool(int(await self._cancel(keys=[conv_key(cid), EVENTS_KEY],
                                           args=[cid, _stamp(self.now()), PREFIX, CLOSED_TTL_SECONDS,
                                                 EVENTS_MAXLEN, why])))

    async def overdue(self, queues: list[str], waited_seconds: float) -> list[str]:
        """The conversations of ``queues`` waiting for at least ``waited_seconds``."""
        cutoff = self.now() - waited_seconds
        found = []
        for queue in queues:
            found += [redis_text(m) for m in await self._redis.zrangebyscore(queue_key(queue), "-inf", cutoff)]
        return found

    async def mark_once(self, cid: str, flag: str) -> bool:
        """Set ``flag`` on the open record; True only for the first caller (e.g. the waiting
        acknowledgement, the unclaimed update: once per hand-off, across instances)."""
        return bool(await self._redis.hsetnx(conv_key(cid), f"flag:{flag}", "1"))

    async def append_message(self, cid: str, sender: str, text: str, agent: str | None = None) -> str:
        """Add a transcript message (and its ``message`` event); returns its stream id."""
        if sender not in SENDERS:
            raise ValueError(f"sender must be one of {SENDERS}")
        entry = await self._message(
            keys=[conv_key(cid), messages_key(cid), EVENTS_KEY],
            args=[cid, sender, text, _stamp(self.now()), agent or "", MESSAGES_MAXLEN,
                  MESSAGES_TTL_SECONDS, EVENTS_MAXLEN])
        return redis_text(entry)

    async def messages(self, cid: str, count: int = 50) -> list[dict]:
        """The last ``count`` transcript messages, oldest first, each with its ``id``."""
        rows = await self._redis.xrevrange(messages_key(cid), count=count)
        return [{**_decode(fields), "id": redis_text(entry)} for entry, fields in reversed(rows)]

    async def events(self, last_id: str = "$", block_ms: int | None = None,
                     count: int = 500) -> list[tuple[str, dict]]:
        """Events after ``last_id`` (``"$"``: only new ones), waiting up to ``block_ms``
        (None or 0: do not wait)."""
        answer = await self._redis.xread({EVENTS_KEY: last_id}, count=count, block=block_ms or None)
        return [(redis_text(entry), _decode(fields))
                for _stream, entries in answer or [] for entry, fields in entries]

    async def last_event_id(self) -> str:
        """The newest event's id (``"0-0"`` when none): where a tail starts without gaps."""
        rows = await self._redis.xrevrange(EVENTS_KEY, count=1)
        return redis_text(rows[0][0]) if rows else "0-0"

    async def record_turn(self, cid: str) -> None:
        """Count ``cid`` among the day's conversations (for the containment rate)."""
        key = stats_key(self.day()) + ":conversations"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.pfadd(key, cid)
            pipe.expire(key, STATS_TTL_SECONDS)
            await pipe.execute()

    async def route_state(self, cid: str) -> str | None:
        """The router's one round trip: the hand-off state of ``cid`` and the turn counted."""
        key = stats_key(self.day()) + ":conversations"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(conv_key(cid), "state")
            pipe.pfadd(key, cid)
            pipe.expire(key, STATS_TTL_SECONDS)
            state, _, _ = await pipe.execute()
        return redis_text(state)

    async def queues(self) -> list[str]:
        """Every queue name used so far."""
        return sorted(redis_text(q) for q in await self._redis.smembers(QUEUES_KEY))

    async def stats(self, day: str | dt.date | None = None) -> dict:
        """The supervisor's figures of ``day`` (default today, in the store's time zone):

        * ``queues``: per queue now: ``waiting`` (length) and ``oldest_wait_seconds``,
          ``average_wait_seconds`` of the conversations waiting in it;
        * ``per_hour``: 24 counts of hand-offs started in each hour of the day;
        * ``requests``, ``claims``, ``average_claim_wait_seconds``;
        * ``ratings``: ``{"agents": {agent: {count, average, distribution}}, "queues": {…}}``
          with ``distribution`` the counts of the scores "1" to "5";
        * ``containment``: ``conversations`` (distinct conversations with a turn that day, an
          estimate), ``handed_off`` (distinct conversations handed off), ``contained`` (the
          difference: finished by the assistant alone) and ``rate`` (contained / conversations,
          None without conversations).
        """
        now = self.now()
        day = day.isoformat() if isinstance(day, dt.date) else (day or self.day(now))
        queues = await self.queues()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(stats_key(day))
            for queue in queues:
                pipe.zrange(queue_key(queue), 0, -1, withscores=True)
            counters, *waits = await pipe.execute()
        # Not pipelined: redis-py refuses PFCOUNT in a Cluster pipeline.
        conversations = await self._redis.pfcount(stats_key(day) + ":conversations")
        handed = await self._redis.pfcount(stats_key(day) + ":handed")
        counters = {k: int(v) for k, v in _decode(counters).items()}
        queue_now = {}
        for queue, members in zip(queues, waits):
            waited = [max(0.0, now - float(score)) for _, score in members]
            queue_now[queue] = {
                "waiting": len(waited),
                "oldest_wait_seconds": round(max(waited), 1) if waited else 0.0,
                "average_wait_seconds": round(sum(waited) / len(waited), 1) if waited else 0.0,
            }
        ratings: dict[str, dict[str, dict]] = {"agents": {}, "queues": {}}
        for name, value in counters.items():
            if not name.startswith("rating:"):
                continue
            _, scope, rest = name.split(":", 2)
            who, _, score = rest.rpartition(":")
            group = ratings["agents" if scope == "agent" else "queues"]
            entry = group.setdefault(who, {"count": 0, "average": 0.0,
                                           "distribution": {str(s): 0 for s in range(1, 6)}})
            entry["distribution"][score] = entry["distribution"].get(score, 0) + value
        for group in ratings.values():
            for entry in group.values():
                total = sum(entry["distribution"].values())
                entry["count"] = total
                weighted = sum(int(s) * n for s, n in entry["distribution"].items())
                entry["average"] = round(weighted / total, 2) if total else 0.0
        conversations = max(int(conversations), int(handed))
        contained = conversations - int(handed)
        claims = counters.get("claims", 0)
        return {
            "day": day,
            "queues": queue_now,
            "per_hour": [counters.get(f"hour:{h:02d}", 0) for h in range(24)],
            "requests": counters.get("requests", 0),
            "claims": claims,
            "average_claim_wait_seconds": round(counters.get("claim_wait_ms", 0) / claims / 1000, 1)
            if claims else 0.0,
            "ratings": ratings,
            "containment": {"conversations": conversations, "handed_off": int(handed),
                            "contained": contained,
                            "rate": round(contained / conversations, 4) if conversations else None},
        }


def _stamp(now: float) -> str:
    return f"{now:.3f}"


__all__ = ["CUSTOMER_TYPES", "EVENTS_KEY", "HandoffStore", "OPEN_STATES", "RATINGS_KEY", "SENDERS",
           "STATES", "conv_key", "messages_key", "queue_key", "stats_key"]
