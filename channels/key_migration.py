"""Moving keys to new names once, when a release renames them (hash tags for Redis Cluster).

:func:`move_keys` copies each key under ``old_prefix`` to the same name under ``new_prefix``
(``DUMP``/``RESTORE`` with its remaining TTL, which works across Cluster slots, unlike ``RENAME``)
and deletes the old key. A key already present under the new name is kept as it is (another
instance moved it first, or the new release already wrote it). Safe to run on every start and
from several instances at once; run every instance of the new release together (an instance of
the old release would keep writing the old names).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Iterable

from redis.exceptions import RedisError, ResponseError

from channels.redis_text import redis_text

log = logging.getLogger(__name__)


async def move_keys(redis: Any, old_prefix: str, new_prefix: str, keep: Iterable[str] = ()) -> int:
    """Move every ``old_prefix*`` key (except those named in ``keep``) to ``new_prefix*``;
    returns how many were moved."""
    kept, moved = set(keep), 0
    async for raw in redis.scan_iter(match=old_prefix + "*", count=500):  # prefixes have no glob characters
        old = redis_text(raw) or ""
        if old in kept or not old.startswith(old_prefix):
            continue
        dump = await redis.dump(old)
        if dump is None:  # expired or moved meanwhile
            continue
        ttl = await redis.pttl(old)
        try:
            await redis.restore(new_prefix + old[len(old_prefix):], max(int(ttl), 0), dump)
            moved += 1
        except ResponseError as exc:
            if "BUSYKEY" not in str(exc):
                raise
        await redis.delete(old)
    if moved:
        log.info("moved %d Redis keys from %s* to %s*", moved, old_prefix, new_prefix)
    return moved


async def migrate_at_start(what: str, migration: Awaitable[int]) -> None:
    """Await ``migration`` at a process start; with Redis unreachable, log and go on (the keys
    move at the next start) rather than keep the gateway from starting and answering 503s."""
    try:
        await migration
    except (RedisError, OSError) as exc:
        log.warning("%s: moving keys of earlier names failed (%s); starting anyway, they move at the next start",
                    what, type(exc).__name__)
