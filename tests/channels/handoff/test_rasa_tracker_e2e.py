"""The hand-off's record in the real Rasa's tracker (HTTP API, --enable-api): pause, resume."""
from __future__ import annotations

import time
import uuid

import aiohttp
import pytest

from channels.rasa_client import RasaClient

pytestmark = pytest.mark.e2e


async def test_pause_and_resume_through_rasas_http_api(rasa_url):
    sender = f"wechat:o-e2e-handoff-{uuid.uuid4().hex[:12]}"
    client = RasaClient(rasa_url, 30)
    await client.start()
    try:
        assert await client.send(sender, "你好")
        await client.pause(sender)
        assert (await tracker(rasa_url, sender))["paused"] is True
        assert await client.send(sender, "查电费") == []  # a paused conversation gets no answer
        await client.resume(sender, {"handoff_requested_at": None})
        state = await tracker(rasa_url, sender)
        assert state["paused"] is False and state["slots"]["handoff_requested_at"] is None
        events = [e["event"] for e in state["events"] if e["event"] in ("pause", "resume")]
        assert events == ["pause", "resume"]
        assert await client.send(sender, "你好")
    finally:
        await client.close()


async def tracker(rasa_url: str, sender: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{rasa_url}/conversations/{sender}/tracker",
                               params={"include_events": "ALL", "t": str(time.time())}) as response:
            assert response.status == 200, await response.text()
            return await response.json()
