"""Many single-key Redis operations in one command: the per-message keys of a broadcast's batch.

redis-py spends tens of microseconds of client CPU on every command, pipelined or not (building
it, packing it, parsing and post-processing its answer), while one script call with many keys
costs a few microseconds per key. :class:`KeyOps` collects operations that each touch ONE key
(take a turn, give it back, record a notice …) and :meth:`KeyOps.run` sends them:

- on one Redis server (or a Sentinel-managed primary): as one ``EVALSHA`` of a fixed script
  over all their keys, in order;
- on a Redis Cluster (``redis.asyncio.RedisCluster``), where one script may only touch keys of
  one slot: as a non-transactional pipeline of the same operations as plain commands, which
  the cluster client routes key by key.

Neither way is a transaction across keys: each operation stands alone (as it did in the
pipelines this replaces). An error in one (e.g. a key of the wrong type) fails the call with a
``RedisError``, with the operations before it done.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from channels.redis_scripts import queue_script
from channels.redis_text import redis_text

# ARGV holds each operation's code and arguments, in KEYS order:
#   S value px nx    SET key value [PX px when px ~= '0'] [NX when nx == '1'] → 1 set, 0 not
#   D value          DEL key when it holds value (a lock's token) → 1
#   H                HGETALL key → flat [field, value, …]
#   W seconds n f1 v1 … fn vn   HSET key f1 v1 … and EXPIRE key seconds → 1
_OPS_LUA = """
local out, a = {}, 1
for i, key in ipairs(KEYS) do
  local op = ARGV[a]
  if op == 'S' then
    local px, res = ARGV[a + 2], nil
    if px ~= '0' and ARGV[a + 3] == '1' then res = redis.call('SET', key, ARGV[a + 1], 'PX', px, 'NX')
    elseif px ~= '0' then res = redis.call('SET', key, ARGV[a + 1], 'PX', px)
    elseif ARGV[a + 3] == '1' then res = redis.call('SET', key, ARGV[a + 1], 'NX')
    else res = redis.call('SET', key, ARGV[a + 1]) end
    out[i] = res and 1 or 0
    a = a + 4
  elseif op == 'D' then
    if redis.call('GET', key) == ARGV[a + 1] then redis.call('DEL', key) end
    out[i] = 1
    a = a + 2
  elseif op == 'H' then
    out[i] = redis.call('HGETALL', key)
    a = a + 1
  elseif op == 'W' then
    local n = tonumber(ARGV[a + 2])
    redis.call('HSET', key, unpack(ARGV, a + 3, a + 2 + 2 * n))
    redis.call('EXPIRE', key, ARGV[a + 1])
    out[i] = 1
    a = a + 3 + 2 * n
  else
    return redis.error_reply('KeyOps: unknown operation ' .. tostring(op))
  end
end
return out
"""

# DEL a key only while it holds the given value (one key: the Cluster path's compare-and-delete).
_DELETE_IF_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


_scripts: dict[str, AsyncScript] = {}


def _script(redis: Any, body: str) -> AsyncScript:
    """``body`` as a script object (its SHA computed once per process), callable with any client."""
    script = _scripts.get(body)
    if script is None:
        script = _scripts[body] = AsyncScript(redis, body)
    return script


def is_cluster(redis: Any) -> bool:
    """True for a Redis Cluster client (multi-key scripts would be cross-slot there)."""
    return isinstance(redis, RedisCluster)


class KeyOps:
    """A batch of single-key operations, run at once by :meth:`run` (see the module doc).
    Each adder returns the index of its answer in :meth:`run`'s list."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._args: list[str] = []
        self._ops: list[tuple[str, tuple[Any, ...]]] = []

    def __len__(self) -> int:
        return len(self._keys)

    def _add(self, key: str, op: str, args: tuple[Any, ...], flat: list[str]) -> int:
        self._keys.append(key)
        self._ops.append((op, args))
        self._args.append(op)
        self._args.extend(flat)
        return len(self._keys) - 1

    def set(self, key: str, value: str, *, px: int | None = None, nx: bool = False) -> int:
        """``SET key value [PX px] [NX]``; answers True when it was set."""
        return self._add(key, "S", (value, px, nx), [value, str(int(px or 0)), "1" if nx else "0"])

    def delete_if(self, key: str, value: str) -> int:
        """Delete ``key`` only while it holds ``value`` (give back a lock); answers None."""
        return self._add(key, "D", (value,), [value])

    def hgetall(self, key: str) -> int:
        """``HGETALL key``; answers a dict of text."""
        return self._add(key, "H", (), [])

    def hset_expire(self, key: str, mapping: Mapping[str, str], seconds: int) -> int:
        """``HSET key mapping`` then ``EXPIRE key seconds``; answers None."""
        flat = [str(seconds), str(len(mapping))]
        for field, value in mapping.items():
            flat += [field, value]
        return self._add(key, "W", (dict(mapping), seconds), flat)

    async def run(self, redis: Any) -> list[Any]:
        """Run every operation (one script call, or a pipeline on a Cluster); their answers."""
        if not self._keys:
            return []
        if is_cluster(redis):
            return await self._run_pipelined(redis)
        raw = await _script(redis, _OPS_LUA)(keys=self._keys, args=self._args, client=redis)
        return [self._answer(op, value) for (op, _args), value in zip(self._ops, raw)]

    async def _run_pipelined(self, redis: Any) -> list[Any]:
        delete_if = _script(redis, _DELETE_IF_LUA)
        async with redis.pipeline(transaction=False) as pipe:
            for key, (op, args) in zip(self._keys, self._ops):
                if op == "S":
                    pipe.set(key, args[0], px=args[1] or None, nx=args[2])
                elif op == "D":
                    await queue_script(pipe, delete_if, [key], [args[0]])
                elif op == "H":
                    pipe.hgetall(key)
                else:
                    pipe.hset(key, mapping=args[0])
                    pipe.expire(key, args[1])
            raw = await pipe.execute()
        answers, at = [], 0
        for op, _args in self._ops:
            value = raw[at]
            at += 2 if op == "W" else 1
            if op == "H":
                answers.append({redis_text(k): redis_text(v) for k, v in (value or {}).items()})
            else:
                answers.append(bool(value) if op == "S" else None)
        return answers

    @staticmethod
    def _answer(op: str, value: Any) -> Any:
        if op == "S":
            return bool(value)
        if op == "H":
            flat = [redis_text(v) for v in value or ()]
            return dict(zip(flat[::2], flat[1::2]))
        return None
