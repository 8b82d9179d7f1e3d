"""channels/key_migration.py: keys move once to their new names; a start with Redis down goes on."""
from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from channels.key_migration import DONE_KEY, merge_sorted_set, migrate_at_start, move_keys, once
from tests.support.ports import free_port


async def test_keys_move_with_their_ttl_and_a_newer_key_is_kept(redis_url):
    redis = aioredis.from_url(redis_url)
    try:
        await redis.set("pd:km-old:a", "1", ex=300)
        await redis.set("pd:km-old:b", "old")
        await redis.set("pd:{km}:b", "new")  # already written by the new release
        await redis.set("pd:km-old:keep", "stays")
        assert await move_keys(redis, "pd:km-old:", "pd:{km}:", keep=("pd:km-old:keep",)) == 1
        assert await redis.get("pd:{km}:a") == b"1" and 0 < await redis.ttl("pd:{km}:a") <= 300
        assert await redis.get("pd:{km}:b") == b"new"
        assert await redis.exists("pd:km-old:a", "pd:km-old:b") == 0
        assert await redis.get("pd:km-old:keep") == b"stays"
        assert await move_keys(redis, "pd:km-old:", "pd:{km}:", keep=("pd:km-old:keep",)) == 0
    finally:
        await redis.delete("pd:{km}:a", "pd:{km}:b", "pd:km-old:keep")
        await redis.aclose()


async def test_a_start_with_redis_down_logs_and_goes_on(caplog: pytest.LogCaptureFixture):
    redis = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with caplog.at_level(logging.WARNING, logger="channels.key_migration"):
            await migrate_at_start("hand-off", move_keys(redis, "pd:handoff:", "pd:{handoff}:"))
    finally:
        await redis.aclose()
    assert "hand-off: moving keys of earlier names failed (ConnectionError)" in caplog.text


async def test_families_queue_merge_and_a_migration_marked_done(redis_url):
    redis = aioredis.from_url(redis_url, decode_responses=True)
    name = f"km-test:{free_port()}"
    try:
        await redis.set("pd:km2:msg:1", "m")
        await redis.set("pd:km2:rl:1", "stays")  # not one of the families
        await redis.zadd("pd:km2:queue", {"1": 10, "2": 20})
        await redis.zadd("pd:{km2}:queue", {"2": 5, "3": 30})  # the new release's entries
        calls = []

        async def migrate() -> int:
            calls.append(1)
            moved = await move_keys(redis, "pd:km2:", "pd:{km2}:", families=("msg:",))
            return moved + await merge_sorted_set(redis, "pd:km2:queue", "pd:{km2}:queue", page=1)

        assert await once(redis, name, migrate) == 3
        assert await redis.get("pd:{km2}:msg:1") == "m" and await redis.get("pd:km2:rl:1") == "stays"
        assert await redis.zrange("pd:{km2}:queue", 0, -1, withscores=True) == [
            ("2", 5.0), ("1", 10.0), ("3", 30.0)]  # nothing lost, the new entry's score kept
        assert not await redis.exists("pd:km2:queue") and not await redis.hexists(DONE_KEY, name)
        assert await once(redis, name, migrate) == 0  # a clean run: marked done
        assert await redis.hexists(DONE_KEY, name)
        await redis.set("pd:km2:msg:2", "late")
        assert await once(redis, name, migrate) == 0 and len(calls) == 2  # not run again
    finally:
        await redis.delete("pd:{km2}:msg:1", "pd:km2:rl:1", "pd:{km2}:queue", "pd:km2:msg:2")
        await redis.hdel(DONE_KEY, name)
        await redis.aclose()
