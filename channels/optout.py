"""Opt-out of proactive messages, one store for every channel, keyed by conversation id.

One Redis hash, ``pd:optout``: field ``<conversation id>`` (``sms:13812345678``,
``wechat:<openid>``, ``web:<session id>``) → unix time of the opt-out. One key, so every
operation is a single-key command (fine on Redis Cluster), a check is one ``HEXISTS``, a
broadcast checks a batch with one ``HMGET`` and the number of opted-out conversations is
``HLEN``. No expiry: an opt-out lasts until the customer opts in again.

Opt-out only stops notices (purpose ``notice``); answers in a conversation and agent messages
still go (the delivery facade decides that, not this store).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from channels.key_migration import once
from channels.redis_text import redis_text

log = logging.getLogger(__name__)

OPT_OUT_KEY = "pd:optout"
# The stores this one replaces: a string key per WeChat openid (set on unsubscribe and on
# WeChat's "not following" refusals) and the SMS hash phone → time.
LEGACY_WECHAT_PATTERN = "pd:optout:wechat:*"
LEGACY_WECHAT_PREFIX = "pd:optout:wechat:"
LEGACY_SMS_KEY = "pd:sms:optout"

# Events that carry their own time (WeChat's subscribe/unsubscribe CreateTime) may arrive out of
# order: the newer one wins. KEYS[1]: the hash; ARGV: field, time.
_OPT_OUT_IF_NEWER = """
local at = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '')
if at and at >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if at then return 0 end
return 1
"""
_OPT_IN_IF_NEWER = """
local at = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '')
if not at or at > tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


class OptOutStore:
    """Which conversations receive no notices (see the module docstring)."""

    def __init__(self, redis: Any, key: str = OPT_OUT_KEY) -> None:
        self._redis = redis
        self._key = key

    async def opt_out(self, conversation_id: str, at: float | None = None) -> bool:
        """Stop notices to ``conversation_id``; True only when it had not opted out (so a
        confirmation goes once). ``at``: the time of the customer's event, for events that may
        arrive out of order (a newer opt-in is not undone by an older opt-out); without it, now."""
        if at is None:
            return bool(await self._redis.hsetnx(self._key, conversation_id, str(int(time.time()))))
        return bool(await self._redis.eval(_OPT_OUT_IF_NEWER, 1, self._key, conversation_id,
                                           str(int(at))))

    async def opt_in(self, conversation_id: str, at: float | None = None) -> bool:
        """Allow notices again; True when the conversation had opted out. With ``at`` (the
        event's time), an opt-out recorded after it stays."""
        if at is None:
            return bool(await self._redis.hdel(self._key, conversation_id))
        return bool(await self._redis.eval(_OPT_IN_IF_NEWER, 1, self._key, conversation_id,
                                           str(int(at))))

    async def is_opted_out(self, conversation_id: str) -> bool:
        """True when ``conversation_id`` must receive no notices."""
        return bool(await self._redis.hexists(self._key, conversation_id))

    async def opted_out_among(self, conversation_ids: Sequence[str]) -> set[str]:
        """The opted-out ones among ``conversation_ids`` (one round trip, for broadcasts)."""
        if not conversation_ids:
            return set()
        values = await self._redis.hmget(self._key, list(conversation_ids))
        return {cid for cid, value in zip(conversation_ids, values) if value is not None}

    async def count(self) -> int:
        """How many conversations opted out."""
        return int(await self._redis.hlen(self._key))

    async def migrate(self) -> int:
        """Move the two legacy stores (``pd:optout:wechat:<openid>`` keys and the
        ``pd:sms:optout`` hash) into this one; returns how many entries were moved.

        Idempotent and safe to run at every gateway start and on several instances at once:
        each entry is copied with ``HSETNX`` (an existing opt-out keeps its time) and only then
        deleted from its old place, so a crash in between leaves it to the next run. Uses
        SCAN/HSCAN, never KEYS. An opt-in written to a legacy store by not-yet-migrated code
        between the copy and the delete is lost (the customer stays opted out): a window of
        one round trip, once. The first run that finds nothing left marks the migration done
        (``pd:migrated``, field ``optout:<this store's key>``): later starts do not scan the
        keyspace (:func:`channels.key_migration.once`).
        """
        return await once(self._redis, f"optout:{self._key}", self._move_legacy)

    async def _move_legacy(self) -> int:
        moved = 0
        async for raw_key in self._redis.scan_iter(match=LEGACY_WECHAT_PATTERN, count=500):
            key = redis_text(raw_key)
            value = await self._redis.get(key)
            if value is not None:
                openid = key[len(LEGACY_WECHAT_PREFIX):]
                await self._redis.hsetnx(self._key, f"wechat:{openid}", redis_text(value))
            await self._redis.delete(key)
            moved += value is not None
        async for raw_phone, value in self._redis.hscan_iter(LEGACY_SMS_KEY, count=500):
            phone = redis_text(raw_phone)
            await self._redis.hsetnx(self._key, f"sms:{phone}", redis_text(value))
            await self._redis.hdel(LEGACY_SMS_KEY, phone)
            moved += 1
        if moved:
            log.info("opt-out: moved %d entries of the legacy stores into %s", moved, self._key)
        return moved
