"""Token buckets in Redis, shared by every process that uses the same Redis.

A bucket holds up to ``count`` tokens and refills at ``count`` per ``seconds``: ``30/min`` allows
a burst of 30 and then one every 2 s. :meth:`TokenBuckets.take` checks several buckets in one
atomic Lua call (one round trip) and takes from all of them only if every one has a token, so a
refused request costs no budget. Time comes from the Redis server's clock (one clock for every
gateway instance and action server), or from the caller for tests.

The keys of one namespace share a hash tag (``pd:ratelimit:{<namespace>}:<bucket>``), so a call
stays on one slot of a Redis Cluster. Only ``evalsha``/``eval`` are used: the same code runs on
redis-py 4.x (Rasa environment) and 5+ (app environment), with or without ``decode_responses``.

A Redis failure never refuses a customer: :meth:`take` then allows and says it was degraded
(callers count it), because a limiter must not turn a Redis hiccup into an outage.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}

# KEYS: one per bucket. ARGV[1]: now in seconds ("" = the server's clock), ARGV[2]: cost, then
# per bucket: capacity, refill per second. Returns {0, "0"} when taken, else {i, wait}: the
# 1-based bucket that refused and the seconds until it would allow.
_TAKE_LUA = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cost = tonumber(ARGV[2])
local levels, stamps = {}, {}
local refused, wait = 0, 0
for i, key in ipairs(KEYS) do
  local capacity, rate = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local level = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  if now > at then
    level, at = level + (now - at) * rate, now
  end
  level = math.min(capacity, level)  -- also when the rate was lowered since
  levels[i], stamps[i] = level, at
  if level < cost and (cost - level) / rate > wait then
    refused, wait = i, (cost - level) / rate
  end
end
if refused > 0 then
  return {refused, tostring(wait)}
end
for i, key in ipairs(KEYS) do
  local capacity, rate = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  redis.call('HSET', key, 'tokens', tostring(levels[i] - cost), 'at', tostring(stamps[i]))
  redis.call('PEXPIRE', key, math.ceil(capacity / rate * 1000) + 1000)
end
return {0, '0'}
"""
_TAKE_SHA = hashlib.sha1(_TAKE_LUA.encode()).hexdigest()


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``seconds``: the bucket's size and its refill speed."""

    count: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}s"


def parse_rate(raw: str, name: str) -> Optional[Rate]:
    """``"30/min"``, ``"10/h"``, ``"5/2s"`` → :class:`Rate`; ``"off"`` or ``"0"`` → None (no limit).

    Raises ValueError (naming ``name``) for anything else.
    """
    text = raw.strip().lower()
    if text in ("off", "0", "none"):
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*(\d*)\s*([a-z]+)", text)
    if not match or match.group(3) not in _UNITS or int(match.group(1)) <= 0:
        raise ValueError(f"{name} must be a rate such as 30/min, 10/h or off, got {raw!r}")
    return Rate(int(match.group(1)), int(match.group(2) or 1) * _UNITS[match.group(3)])


def address_key(address: str) -> str:
    """The part of a client address a per-address budget is keyed on: an IPv4 address as it is
    (also when IPv4-mapped, ``::ffff:1.2.3.4``), an IPv6 address by its /64 (one customer line
    gets a whole /64, so single addresses cost an attacker nothing). Anything unparseable is
    used as given."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    ip = getattr(ip, "ipv4_mapped", None) or ip
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(frozen=True)
class Bucket:
    """One budget: ``name`` within the namespace (e.g. ``address:10.0.0.1``) and its rate."""

    name: str
    rate: Rate


@dataclass(frozen=True)
class Verdict:
    """The outcome of :meth:`TokenBuckets.take`."""

    allowed: bool
    refused_by: Optional[str] = None  # the name of the bucket that refused
    retry_after: float = 0.0          # seconds until that bucket would allow
    degraded: bool = False            # Redis failed: allowed without checking


class TokenBuckets:
    """Token buckets of one namespace (e.g. ``webchat``) in Redis."""

    def __init__(self, redis, namespace: str) -> None:
        """``redis`` is a ``redis.asyncio`` client (or cluster client); it is never closed here."""
        self._redis = redis
        self._prefix = f"pd:ratelimit:{{{namespace}}}:"

    def key(self, bucket_name: str) -> str:
        """The Redis key of a bucket."""
        return self._prefix + bucket_name

    async def take(self, buckets: Sequence[Bucket], cost: float = 1.0,
                   now: Optional[float] = None) -> Verdict:
        """Take ``cost`` tokens from every bucket, or from none if one of them is short.

        ``now`` (seconds, any epoch) pins the clock for tests; by default Redis's own clock.
        """
        if not buckets:
            return Verdict(True)
        keys = [self.key(b.name) for b in buckets]
        args: list[str] = ["" if now is None else repr(float(now)), repr(float(cost))]
        for bucket in buckets:
            args += [str(bucket.rate.count), repr(bucket.rate.count / bucket.rate.seconds)]
        try:
            try:
                refused, wait = await self._redis.evalsha(_TAKE_SHA, len(keys), *keys, *args)
            except NoScriptError:
                refused, wait = await self._redis.eval(_TAKE_LUA, len(keys), *keys, *args)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("rate limit check failed (%s); allowing", type(exc).__name__)
            return Verdict(True, degraded=True)
        refused = int(refused)
        if refused == 0:
            return Verdict(True)
        return Verdict(False, buckets[refused - 1].name, float(wait))
