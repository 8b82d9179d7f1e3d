"""At-most-once acceptance of WeChat pushes, shared by every gateway instance through Redis.

WeChat retries a push three times when it gets no answer within 5 seconds, and a retry may land on
another instance.  Messages are identified by MsgId, events by FromUserName + CreateTime (+ the
event type and key), as WeChat's documentation recommends.

Signed URLs are single-use per content (:class:`SignedUrlLedger`): WeChat's ``signature`` covers
only the token, ``timestamp`` and ``nonce``, not the body, so a captured URL could otherwise be
replayed with any body for as long as its timestamp is inside the replay window.  WeChat's own
retries repeat the URL and the push unchanged, so they pass and are then answered by the
deduplication above.
"""
from __future__ import annotations

import hashlib
import json
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
    """Pushes handled without a queued job: a push counts as handled only once its effect is
    written (:meth:`seen` before the writes, :meth:`remember` after them), so a failed write
    leaves the push to WeChat's retry instead of losing it."""

    def __init__(self, redis: Any, ttl_seconds: int = 3600) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def seen(self, fields: Mapping[str, str]) -> bool:
        """True when this push was already handled (a retry)."""
        return bool(await self._redis.exists(dedupe_key(fields)))

    async def remember(self, fields: Mapping[str, str]) -> bool:
        """Record the push as handled; False when a concurrent delivery recorded it first."""
        return bool(await self._redis.set(dedupe_key(fields), "1", nx=True, ex=self._ttl))


# First use: record the content's digest. Later uses: accepted only with the same digest.
_USE_SIGNED_URL = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('get', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


def content_digest(content: Mapping[str, str] | str) -> str:
    """SHA-256 of a push's fields (order-independent) or of a string."""
    text = content if isinstance(content, str) else json.dumps(sorted(content.items()), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SignedUrlLedger:
    """Which content each signed URL (``timestamp`` + ``nonce``) was first used with."""

    def __init__(self, redis: Any, replay_window_seconds: int) -> None:
        self._redis = redis
        # A timestamp is accepted from window seconds before it to window seconds after it.
        self._ttl = 2 * replay_window_seconds + 1

    @staticmethod
    def key(timestamp: str, nonce: str) -> str:
        """The Redis key of one signed URL."""
        return f"pd:wechat:nonce:{timestamp}:{nonce}"

    async def use(self, timestamp: str, nonce: str, digest: str) -> bool:
        """True for the URL's first use and for repeats with the same content (WeChat's retries);
        False when the URL was already used with other content (a replay).
        Raises RedisError when Redis is unavailable."""
        return bool(await self._redis.eval(_USE_SIGNED_URL, 1, self.key(timestamp, nonce), digest, self._ttl))
