"""One gateway instance's consumer of a Redis stream, in a consumer group shared by the instances.

Subclasses implement :meth:`StreamGroupConsumer.handle` (do the entry's work, then acknowledge
it); this base owns the group's life: creating it, taking over the entries a dead instance left
pending (``XAUTOCLAIM`` after ``claim_idle_seconds``), reading new ones, the loop that outlives
one bad pass, and leaving the group at shutdown.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError, ResponseError

from channels.redis_text import redis_text

log = logging.getLogger(__name__)


class StreamGroupConsumer:
    """Reads ``stream`` as ``consumer`` of ``group``; ``name`` labels its log lines."""

    name = "stream"

    def __init__(self, redis: Any, stream: str, group: str, consumer: str, *,
                 block_ms: int = 1000, claim_idle_seconds: float = 60.0) -> None:
        self._redis = redis
        self._stream = stream
        self._group = group
        self.consumer = consumer
        self._block_ms = block_ms          # below the Redis client's socket timeout
        self._claim_idle_ms = int(claim_idle_seconds * 1000)
        self._group_ready = False

    async def handle(self, entry_id: str, fields: Mapping[Any, Any] | None) -> Any:
        """Do the work of one entry and acknowledge it; ``fields`` is None for an entry that
        was deleted while pending."""
        raise NotImplementedError

    def count_error(self) -> None:
        """Count a pass that failed unexpectedly (the subclass's metric)."""

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def run_once(self, count: int = 20) -> int:
        """Handle the stale entries of dead consumers, else wait up to ``block_ms`` for new
        ones; returns how many entries were handled."""
        await self._ensure_group()
        # JUSTID, then XRANGE: an entry deleted while pending comes back from XAUTOCLAIM as a
        # bare nil on Redis 6.2 (no id to acknowledge it by), which would block the group.
        stale = await self._redis.xautoclaim(
            self._stream, self._group, self.consumer, self._claim_idle_ms, "0-0", count=count,
            justid=True)
        if stale:
            for raw_id in stale:
                entry_id = redis_text(raw_id)
                found = await self._redis.xrange(self._stream, entry_id, entry_id)
                await self.handle(entry_id, found[0][1] if found else None)
            return len(stale)
        answer = await self._redis.xreadgroup(self._group, self.consumer, {self._stream: ">"},
                                              count=count, block=self._block_ms)
        entries = answer[0][1] if answer else []
        for entry_id, fields in entries:
            await self.handle(redis_text(entry_id), fields)
        return len(entries)

    async def leave(self) -> None:
        """Remove this consumer from the group at shutdown unless it still holds entries (those
        stay claimable by the other instances). Keeps the group from collecting one consumer per
        process start."""
        try:
            if not await self._redis.xpending_range(self._stream, self._group, "-", "+", 1,
                                                    consumername=self.consumer):
                await self._redis.xgroup_delconsumer(self._stream, self._group, self.consumer)
        except (RedisError, OSError) as exc:
            log.warning("%s: could not leave the group (%s)", self.name, type(exc).__name__)

    async def run_forever(self) -> None:
        """The consumer loop of one gateway instance."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("%s: read failed (%s); retrying", self.name, type(exc).__name__)
                self._group_ready = False
                await asyncio.sleep(1.0)
            except Exception:  # noqa: BLE001 - the consumer must outlive one bad pass
                log.exception("%s: pass failed", self.name)
                self.count_error()
                await asyncio.sleep(1.0)
