"""Rasa keeps its trackers and conversation locks in the product's Redis."""
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

pytestmark = pytest.mark.e2e


async def test_tracker_lives_in_redis_and_survives_in_it(rasa_url: str, redis_url: str):
    sender = f"web:test-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": "你好"}
        ) as response:
            assert response.status == 200
            replies = await response.json()
    assert replies and replies[0]["text"]

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() for k in await client.keys(f"pdrasa:tracker:{sender}")]
        assert keys == [f"pdrasa:tracker:{sender}"]
        assert 0 < await client.ttl(keys[0]) <= 30 * 24 * 3600
    finally:
        await client.aclose()

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{rasa_url}/conversations/{sender}/tracker") as response:
            tracker = await response.json()
    assert any(e.get("event") == "user" and e.get("text") == "你好" for e in tracker["events"])
