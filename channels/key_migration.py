"""Moving keys to new names once, when a release renames them (hash tags for Redis Cluster).

:func:`move_keys` copies each key under ``old_prefix`` to the same name under ``new_prefix``
(``DUMP``/``RESTORE`` with its remaining TTL, which works across Cluster slots, unlike ``RENAME``)
and deletes the old key. A key already present under the new name is kept as it is (another
instance moved it first, or the new release already wrote it). Safe to run on every start and
from several instances at once; run every instance of the new release together (an instance of
the old release would keep writing the old names). :func:`merge_sorted_set` moves a queue member
by member; :func:`once` keeps a migration from scanning the keyspace at every start.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Iterable

from redis.exceptions import RedisError, ResponseError

from channels.redis_text import redis_text

log = logging.getLogger(__name__)

DONE_KEY = "pd:migrated"  # hash: migration name → unix time a run found nothing left to move


async def move_keys(redis: Any, old_prefix: str, new_prefix: str, keep: Iterable[str] = (),
                    families: tuple[str, ...] = ()) -> int:
    """Move every ``old_prefix*`` key (except those named in ``keep``; with ``families``, only
    those whose name goes on with one of them) to ``new_prefix*``; returns how many were moved."""
    kept, moved = set(keep), 0
    async for raw in redis.scan_iter(match=old_prefix + "*", count=500):  # prefixes have no glob characters
        old = redis_text(raw) or ""
        if old in kept or not old.startswith(old_prefix) \
                or (families and not old[len(old_prefix):].startswith(families)):
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


async def merge_sorted_set(redis: Any, old: str, new: str, page: int = 500) -> int:
    """Move the members of the sorted set ``old`` into ``new`` (a member already in ``new`` keeps
    its score there), page by page, each page removed from ``old`` once it is in ``new``; returns
    how many members left ``old``. A queue renamed while a new instance already writes the new
    name loses nothing (a plain move would keep the new key and drop the old one)."""
    moved = 0
    while True:
        members = await redis.zrange(old, 0, page - 1, withscores=True)
        if not members:
            break
        await redis.zadd(new, dict(members), nx=True)
        moved += await redis.zrem(old, *(member for member, _score in members))
    if moved:
        log.info("moved %d members of %s into %s", moved, old, new)
    return moved


async def once(redis: Any, name: str, migration: Callable[[], Awaitable[int]]) -> int:
    """Run ``migration`` (returns how many keys or entries it moved) unless it is marked done in
    the hash :data:`DONE_KEY` under ``name``; it is marked when a run finds nothing left to
    move, so a start after the upgrade scans once more (keys an instance of the old release
    wrote meanwhile move then) and no later start scans the keyspace again."""
    if await redis.hexists(DONE_KEY, name):
        return 0
    moved = await migration()
    if not moved:
        await redis.hset(DONE_KEY, name, str(int(time.time())))
    return moved


async def migrate_at_start(what: str, migration: Awaitable[int]) -> None:
    """Await ``migration`` at a process start; with Redis unreachable, log and go on (the keys
    move at the next start) rather than keep the gateway from starting and answering 503s."""
    try:
        await migration
    except (RedisError, OSError) as exc:
        log.warning("%s: moving keys of earlier names failed (%s); starting anyway, they move at the next start",
                    what, type(exc).__name__)
