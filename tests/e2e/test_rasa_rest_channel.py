"""Rasa's REST channel as bot/credentials.yml configures it (bot.rest_channel.RestInput)."""
import asyncio
import re

import aiohttp
import pytest

from scripts.stack import Stack

pytestmark = pytest.mark.e2e

FROZE = re.compile(r"froze (\d+) objects of the loaded model out of garbage collection")


async def test_rest_channel_keeps_rasas_routes(rasa_url: str):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{rasa_url}/webhooks/rest/") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}


async def test_loaded_model_is_frozen_out_of_garbage_collection(stack: Stack, rasa_url: str):
    rasa = next(p for p in stack.processes if p.name == "rasa")
    frozen: list[int] = []
    for _ in range(60):  # the listener runs just after the server started answering
        frozen = [int(n) for n in FROZE.findall(rasa.log_path.read_text(errors="replace"))]
        if frozen:
            break
        await asyncio.sleep(0.5)
    assert frozen, "Rasa did not log the freeze after loading the model"
    assert min(frozen) > 100_000  # the model's objects, not just a handful


async def test_the_gateways_message_id_is_the_recorded_user_uttered_message_id(rasa_url: str):
    sender, message_id = "web:e2e-message-id", "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{rasa_url}/webhooks/rest/webhook", json={
                "sender": sender, "message": "你好", "metadata": {"message_id": message_id}}) as response:
            assert response.status == 200 and await response.json()
        async with session.get(f"{rasa_url}/conversations/{sender}/tracker") as response:
            events = (await response.json())["events"]
    users = [e for e in events if e["event"] == "user"]
    assert users[-1]["message_id"] == message_id and users[-1]["text"] == "你好"
    assert any(e["event"] == "bot" for e in events[events.index(users[-1]):])
