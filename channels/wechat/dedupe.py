"""At-most-once acceptance of WeChat pushes, shared by every gateway instance through Redis.

WeChat retries a push three times when it gets no answer within 5 seconds, and a retry may land on
another instance.  Messages are identified by MsgId, events by FromUserName + CreateTime (+ the
event type and key), as WeChat's documentation recommends.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def push_identity(fields: Mapping[str, str]) -> str:
    """What identifies this push across WeChat's retries."""
    msg_id = fields.get("MsgId")
    if msg_id:
        return f"msg:{msg_id}"
    # EventKey too: two different menu clicks within the same second are two events, while a
    # retry repeats every field.
    return (f"evt:{fields.get('FromUserName', '')}:{fields.get('CreateTime', '')}:{fields.get('Event', '')}:"
            f"{fields.get('EventKey', '')[:128]}")


def dedupe_key(fields: Mapping[str, str]) -> str:
    """The Redis key of a push handled without a queued job (pushes that queue a job are
    deduplicated atomically with the queueing, see Dispatcher.enqueue)."""
    return f"pd:wechat:seen:{push_identity(fields)}"


class Deduper:
    """``SET NX`` with a TTL: the first instance to see a push wins, retries are dropped."""

    def __init__(self, redis: Any, ttl_seconds: int = 3600) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def first_time(self, fields: Mapping[str, str]) -> bool:
        """True for the first delivery of this push, False for a retry."""
        return bool(await self._redis.set(dedupe_key(fields), "1", nx=True, ex=self._ttl))

    async def forget(self, fields: Mapping[str, str]) -> None:
        """Undo :meth:`first_time` when the push could not be accepted, so WeChat's retry can be."""
        await self._redis.delete(dedupe_key(fields))
