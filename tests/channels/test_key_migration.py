"""channels/key_migration.py: keys move once to their new names; a start with Redis down goes on."""
from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from channels.key_migration import migrate_at_start, move_keys
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
