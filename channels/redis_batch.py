"""Many single-key Redis operations in one command: the per-message keys of a broadcast's batch.

redis-py spends tens of microseconds of client CPU on every command, pipelined or not (building
it, packing it, parsing and post-processing its answer), while one script call with many keys
costs a few microseconds per key. :class:`KeyOps` collects operations that each touch ONE key
(take a turn, give it back, record a notice …) and :meth:`KeyOps.run` sends them:

- on one Redis server (or a Sentinel-managed primary): as one ``EVALSHA`` of a fixed script
  over all their keys, in order, the operations as one JSON argument;
- on a Redis Cluster (``redis.asyncio.RedisCluster``), where one script may only touch keys of
  one slot: as a non-transactional pipeline of the same operations as plain commands, which
  the cluster client routes key by key.

Neither way is a transaction across keys: each operation stands alone (as it did in the
pipelines this replaces). An error in one (e.g. a key of the wrong type) fails the call with a
``RedisError``, with the operations before it done.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from channels.redis_scripts import queue_script
from channels.redis_text import redis_text

# ARGV[1] is a JSON array with one entry per key of KEYS (one argument for the whole batch:
# redis-py packs each argument in Python, a JSON text is made in C):
#   ["S", value, px, nx]   SET key value [PX px when px ~= '0'] [NX when nx == '1'] → 1 set, 0 not
#   ["D", value]           DEL key when it holds value (a lock's token) → 1
#   ["H"]                  HGETALL key → flat [field, value, …]
#   ["W", seconds, [f1, v1, …]]  HSET key f1 v1 … and EXPIRE key seconds → 1
_OPS_LUA = """
local ops, out = cjson.decode(ARGV[1]), {}
for i, key in ipairs(KEYS) do
  local op = ops[i]
  local code = op[1]
  if code == 'S' then
    local res
    if op[3] ~= '0' and op[4] == '1' then res = redis.call('SET', key, op[2], 'PX', op[3], 'NX')
    elseif op[3] ~= '0' then res = redis.call('SET', key, op[2], 'PX', op[3])
    elseif op[4] == '1' then res = redis.call('SET', key, op[2], 'NX')
    else res = redis.call('SET', key, op[2]) end
    out[i] = res and 1 or 0
  elseif code == 'D' then
    if redis.call('GET', key) == op[2] then redis.call('DEL', key) end
    out[i] = 1
  elseif code == 'H' then
    out[i] = redis.call('HGETALL', key)
  elseif code == 'W' then
    redis.call('HSET', key, unpack(op[3]))
    redis.call('EXPIRE', key, op[2])
    out[i] = 1
  else
    return redis.error_reply('KeyOps: unknown operation ' .. tostring(code))
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
        self._ops: list[list[Any]] = []  # what the script gets, one per key

    def __len__(self) -> int:
        return len(self._keys)

    def _add(self, key: str, op: list[Any]) -> int:
        self._keys.append(key)
        self._ops.append(op)
        return len(self._keys) - 1

    def set(self, key: str, value: str, *, px: int | None = None, nx: bool = False) -> int:
        """``SET key value [PX px] [NX]``; answers True when it was set."""
        return self._add(key, ["S", value, str(int(px or 0)), "1" if nx else "0"])

    def delete_if(self, key: str, value: str) -> int:
        """Delete ``key`` only while it holds ``value`` (give back a lock); answers None."""
        return self._add(key, ["D", value])

    def hgetall(self, key: str) -> int:
        """``HGETALL key``; answers a dict of text."""
        return self._add(key, ["H"])

    def hset_expire(self, key: str, mapping: Mapping[str, str], seconds: int) -> int:
        """``HSET key mapping`` (not empty) then ``EXPIRE key seconds``; answers None."""
        if not mapping:
            raise ValueError("hset_expire needs at least one field")
        return self._add(key, ["W", str(int(seconds)), [x for item in mapping.items() for x in item]])

    async def run(self, redis: Any) -> list[Any]:
        """Run every operation (one script call, or a pipeline on a Cluster); their answers."""
        if not self._keys:
            return []
        if is_cluster(redis):
            return await self._run_pipelined(redis)
        ops = json.dumps(self._ops, ensure_ascii=False, separators=(",", ":"))
        raw = await _script(redis, _OPS_LUA)(keys=self._keys, args=[ops], client=redis)
        return [self._answer(op[0], value) for op, value in zip(self._ops, raw)]

    async def _run_pipelined(self, redis: Any) -> list[Any]:
        delete_if = _script(redis, _DELETE_IF_LUA)
        async with redis.pipeline(transaction=False) as pipe:
            for key, op in zip(self._keys, self._ops):
                if op[0] == "S":
                    pipe.set(key, op[1], px=int(op[2]) or None, nx=op[3] == "1")
                elif op[0] == "D":
                    await queue_script(pipe, delete_if, [key], [op[1]])
                elif op[0] == "H":
                    pipe.hgetall(key)
                else:
                    pipe.hset(key, items=op[2])
                    pipe.expire(key, int(op[1]))
            raw = await pipe.execute()
        answers, at = [], 0
        for op in self._ops:
            value = raw[at]
            at += 2 if op[0] == "W" else 1
            if op[0] == "H":
                answers.append({redis_text(k): redis_text(v) for k, v in (value or {}).items()})
            else:
                answers.append(bool(value) if op[0] == "S" else None)
        return answers

    @staticmethod
    def _answer(op: str, value: Any) -> Any:
        if op == "S":
            return bool(value)
        if op == "H":
            flat = [redis_text(v) for v in value or ()]
            return dict(zip(flat[::2], flat[1::2]))
        return None
