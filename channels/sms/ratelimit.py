"""Per-number SMS rate limits enforced in Redis, so every gateway instance shares the budget.

Two budgets per number: ``proactive`` (notifications; default 1/min, 5/h, 10/day) and ``reply``
(answers inside a conversation; default 20/h, to stop loops between two robots). Each limit is a
fixed window counted by one Redis key; one Lua script checks every window and takes a unit from
all of them only when all allow it, so a refused message costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from channels.redis_scripts import queue_script
from channels.sms.config import RateLimit

Budget = Literal["proactive", "reply"]

# KEYS: one counter per window. ARGV: now, then (limit, window) pairs. Returns 0 when allowed,
# else the seconds until the tightest exceeded window rolls over.
_TAKE = """
local now = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local used = tonumber(redis.call('GET', key) or '0')
  if used >= limit then
    local left = window - (now % window)
    if left > wait then wait = left end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('INCR', key)
  redis.call('EXPIRE', key, window + 60)
end
return 0
"""


@dataclass(frozen=True)
class Decision:
    """The outcome of :meth:`RateLimiter.take`: allowed, or how long to wait."""

    allowed: bool
    retry_after: int = 0


class RateLimiter:
    """Takes one message from a number's budget, atomically across instances."""

    def __init__(self, redis, limits: dict[str, tuple[RateLimit, ...]]) -> None:
        self._redis = redis
        self._limits = limits
        self._script = redis.register_script(_TAKE)

    def _call(self, budget: Budget, phone: str, now: float) -> tuple[list[str], list[int]] | None:
        """The script's keys and arguments for one message, None when ``budget`` has no limit."""
        limits = self._limits.get(budget, ())
        if not limits:
            return None
        seconds = int(now)
        keys = [f"pd:sms:rl:{{{phone}}}:{budget}:{lim.window_seconds}:{seconds // lim.window_seconds}"
                for lim in limits]
        args: list[int] = [seconds]
        for lim in limits:
            args += [lim.limit, lim.window_seconds]
        return keys, args

    async def take(self, budget: Budget, phone: str, now: float) -> Decision:
        """Count one message to ``phone`` against ``budget`` if every window allows it."""
        call = self._call(budget, phone, now)
        if call is None:
            return Decision(True)
        wait = int(await self._script(keys=call[0], args=call[1]))
        return Decision(wait == 0, wait)

    async def take_many(self, takes: list[tuple[Budget, str]], now: float) -> list[Decision]:
        """:meth:`take` for each (budget, phone), in one pipeline (a number may appear more
        than once: each take counts)."""
        calls = [self._call(budget, phone, now) for budget, phone in takes]
        waits: list[int] = []
        if any(calls):
            async with self._redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    if call is not None:
                        await queue_script(pipe, self._script, call[0], call[1])
                waits = [int(w) for w in await pipe.execute()]
        answers = iter(waits)
        decisions = []
        for call in calls:
            wait = 0 if call is None else next(answers)
            decisions.append(Decision(wait == 0, wait))
        return decisions
