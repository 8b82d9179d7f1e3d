"""Rasa keeps its trackers (bot/tracker_store.py) and conversation locks in the product's Redis."""
import json
import time
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

pytestmark = pytest.mark.e2e


async def say(rasa_url: str, sender: str, text: str) -> list:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": text}
        ) as response:
            assert response.status == 200
            return await response.json()


async def full_tracker(rasa_url: str, sender: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{rasa_url}/conversations/{sender}/tracker") as response:
            assert response.status == 200
            return await response.json()


async def test_tracker_events_are_appended_in_redis_and_expire(rasa_url: str, redis_url: str):
    sender = f"web:test-{uuid.uuid4().hex[:8]}"
    replies = await say(rasa_url, sender, "你好")
    assert replies and replies[0]["text"]

    client = aioredis.Redis.from_url(redis_url)
    try:
        events_key, meta_key = f"pdrasa:trk:{{{sender}}}:events", f"pdrasa:trk:{{{sender}}}:meta"
        assert await client.exists(f"pdrasa:tracker:{sender}") == 0
        stored = [json.loads(e) for e in await client.lrange(events_key, 0, -1)]
        assert any(e["event"] == "user" and e["text"] == "你好" for e in stored)
        meta = await client.hgetall(meta_key)
        assert int(meta[b"n"]) == len(stored) and meta[b"id"].decode() == sender
        for key in (events_key, meta_key):
            assert 0 < await client.ttl(key) <= 30 * 24 * 3600

        await say(rasa_url, sender, "谢谢")
        after = [json.loads(e) for e in await client.lrange(events_key, 0, -1)]
        assert after[:len(stored)] == stored and len(after) > len(stored)  # appended, not rewritten
    finally:
        await client.aclose()

    tracker = await full_tracker(rasa_url, sender)
    assert [e.get("text") for e in tracker["events"] if e.get("event") == "user"] == ["你好", "谢谢"]


async def test_a_stock_format_tracker_is_moved_over_and_continued(rasa_url: str, redis_url: str):
    """A conversation stored by Rasa's stock RedisTrackerStore (one JSON blob) before the upgrade:
    its history and slots survive, its next turn opens a new session."""
    sender = f"wechat:legacy-{uuid.uuid4().hex[:8]}"
    at = time.time() - 2 * 86400
    events = [
        {"event": "action", "name": "action_session_start", "timestamp": at},
        {"event": "session_started", "timestamp": at},
        {"event": "action", "name": "action_listen", "timestamp": at},
        {"event": "user", "text": "旧消息", "timestamp": at + 1,
         "parse_data": {"intent": {"name": "greet", "confidence": 1.0}, "entities": []}},
        {"event": "slot", "name": "account_number", "value": "1000000001", "timestamp": at + 2},
        {"event": "action", "name": "action_listen", "timestamp": at + 3},
    ]
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.set(f"pdrasa:tracker:{sender}", json.dumps({"events": events, "name": sender}), ex=86400)
        replies = await say(rasa_url, sender, "你好")
        assert replies and replies[0]["text"]
        assert await client.exists(f"pdrasa:tracker:{sender}") == 0
        stored = [json.loads(e) for e in await client.lrange(f"pdrasa:trk:{{{sender}}}:events", 0, -1)]
        assert [e["event"] for e in stored[:6]] == [e["event"] for e in events]
        starts = [i for i, e in enumerate(stored) if e.get("name") == "action_session_start"]
        assert len(starts) == 2  # the old session and the one this turn opened
        assert int(await client.hget(f"pdrasa:trk:{{{sender}}}:meta", "s")) == starts[-1]
    finally:
        await client.aclose()

    tracker = await full_tracker(rasa_url, sender)
    assert [e.get("text") for e in tracker["events"] if e.get("event") == "user"] == ["旧消息", "你好"]
    assert tracker["slots"]["account_number"] == "1000000001"  # carried over to the new session
