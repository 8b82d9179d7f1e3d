"""A whole conversation by SMS with the real assistant: bill query with account binding.

Real Rasa (trained model), real action server, real reference backends and Redis — the lead's
session fixtures (marker ``e2e``). The gateway is the product's own app (create_app) with the SMS
channel pointed at the loopback Aliyun fake, which verifies every request's signature; the test
plays Aliyun pushing the customer's SMS (SmsUp) to /sms/aliyun/up.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import secrets

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from backends import demo_accounts as demo
from channels.sms import SMS_RUNTIME
from tests.channels.sms.conftest import SIGN
from fakes.aliyun_sms import up_item

pytestmark = pytest.mark.e2e


async def test_bill_query_with_binding_by_sms(rasa_url, redis_url, aliyun_fake, templates_file,
                                              monkeypatch):
    from channels.app import create_app
    from channels.config import GatewayConfig

    token = secrets.token_hex(8)
    env = {"REDIS_URL": redis_url, "RASA_URL": rasa_url, "SMS_PROVIDER": "aliyun",
           "SMS_SIGN_NAME": SIGN, "SMS_TEMPLATES_FILE": str(templates_file),
           "SMS_CALLBACK_TOKEN": token, "SMS_QUIET_HOURS": "off", "SMS_MAX_PARTS": "5",
           "ALIYUN_SMS_ACCESS_KEY_ID": aliyun_fake.access_key_id,
           "ALIYUN_SMS_ACCESS_KEY_SECRET": aliyun_fake.access_key_secret,
           "ALIYUN_SMS_ENDPOINT": aliyun_fake.url}
    for key in [k for k in os.environ if k.startswith(("SMS_", "ALIYUN_SMS", "TENCENT_SMS"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = create_app(GatewayConfig.from_env())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    phone = f"1{random.choice('3456789')}{random.randrange(10**9):09d}"
    sequence = iter(range(random.randrange(10**6), 10**7))
    session = aiohttp.ClientSession()

    async def say(text: str) -> str:
        """Send one SMS as the customer; returns what the customer receives back (all parts)."""
        before = len([s for s in aliyun_fake.sent if s["phone"] == phone])
        url = str(server.make_url(f"/sms/aliyun/up?token={token}"))
        async with session.post(url, data=json.dumps([up_item(phone, text, next(sequence))]),
                                headers={"Content-Type": "application/json"}) as response:
            assert (response.status, await response.json()) == (200, {"code": 0, "msg": "成功"})
        await asyncio.wait_for(app[SMS_RUNTIME].webhooks.drain(), 60)
        received = [s for s in aliyun_fake.sent if s["phone"] == phone][before:]
        assert received, f"no SMS answer to {text!r}"
        for sms in received:
            assert sms["template"] == "SMS_900000001" and sms["sign_name"] == SIGN
            assert len(sms["params"]["content"]) <= 35
        return "".join(s["params"]["content"] for s in received)

    try:
        asked_account = await say("查一下我家电费")
        assert "户号" in asked_account
        asked_phone = await say(demo.RESIDENTIAL_TOU)
        assert "后四位" in asked_phone or "手机" in asked_phone
        bill = await say(demo.RESIDENTIAL_TOU_PHONE[-4:])
        assert "元" in bill
        assert demo.RESIDENTIAL_TOU not in bill  # the 户号 only ever appears masked
        # The conversation is sms:<phone> in Rasa, and every SMS was signed and accepted.
        async with session.get(f"{rasa_url}/conversations/sms:{phone}/tracker") as response:
            tracker = await response.json()
        assert any(e.get("event") == "user" for e in tracker["events"])
        assert not aliyun_fake.rejected
    finally:
        await session.close()
        await server.close()
