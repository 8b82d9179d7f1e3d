"""The outbound path inside a real gateway app with all three channels enabled: requests that
another process appends to ``pd:outbound:requests`` reach the WeChat and SMS providers' loopback
fakes through the gateway's own deliverer."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from channels.delivery import DELIVERER_KEY
from channels.key_migration import DONE_KEY
from channels.messages import DeliveryResult, Notice
from channels.optout import OPT_OUT_KEY
from channels.outbound_requests import RESULT_PREFIX, STREAM
from tests.channels.sms.conftest import SIGN, TEMPLATES, aliyun_templates
from tests.support.redis_db import DELIVERY_GATEWAY_DB, redis_database
from fakes.aliyun_sms import FakeAliyunSms
from fakes.wechat_api import FakeWeChatApi

CODE_TEMPLATE = {"verification_code": {"text": "您的验证码为${code}，5分钟内有效。", "params": ["code"],
                                       "aliyun": "SMS_900000009", "tencent": "900009"}}


@pytest.fixture
async def fakes():
    wechat = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    sms = FakeAliyunSms(sign_names=(SIGN,), templates={**aliyun_templates(), "SMS_900000009": ("code",)})
    await wechat.start()
    await sms.start()
    yield wechat, sms
    await sms.close()
    await wechat.close()


@pytest.fixture
def gateway_redis_url(redis_url) -> str:
    """A database of its own: the session's gateways consume the stream in database 0."""
    return redis_database(redis_url, DELIVERY_GATEWAY_DB)


@pytest.fixture
async def redis(gateway_redis_url):
    client = Redis.from_url(gateway_redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def gateway_factory(fakes, gateway_redis_url, rasa_fake, tmp_path, monkeypatch):
    """``await gateway_factory()``: a started gateway app with all three channels."""
    from channels.app import create_app
    from channels.config import GatewayConfig

    wechat, sms = fakes
    sms_templates = tmp_path / "sms_templates.yml"
    sms_templates.write_text(yaml.safe_dump({"version": 1, "templates": {**TEMPLATES, **CODE_TEMPLATE}},
                                            allow_unicode=True), encoding="utf-8")
    wechat_templates = tmp_path / "wechat_templates.yml"
    wechat_templates.write_text(yaml.safe_dump({"version": 1, "templates": {"outage_notice": {
        "template_id": "TPL-outage", "data": {"thing1": "${area}", "time2": "${start}",
                                              "time3": "${end}", "thing4": "${reason}"}}}},
        allow_unicode=True), encoding="utf-8")
    for key in [k for k in os.environ if k.startswith(("WECHAT_", "SMS_", "ALIYUN_SMS", "TENCENT_SMS",
                                                       "GATEWAY_", "DELIVERY_"))]:
        monkeypatch.delenv(key)
    env = {"REDIS_URL": gateway_redis_url, "RASA_URL": rasa_fake.url, "DELIVERY_QUIET_HOURS": "off",
           "WECHAT_TOKEN": "tok" + secrets.token_hex(6), "WECHAT_APP_ID": wechat.app_id,
           "WECHAT_APP_SECRET": wechat.app_secret, "WECHAT_API_BASE_URL": wechat.base_url,
           "WECHAT_TEMPLATES_FILE": str(wechat_templates),
           "SMS_PROVIDER": "aliyun", "SMS_SIGN_NAME": SIGN, "SMS_TEMPLATES_FILE": str(sms_templates),
           "SMS_CALLBACK_TOKEN": secrets.token_hex(12), "SMS_QUIET_HOURS": "off",
           "ALIYUN_SMS_ACCESS_KEY_ID": sms.access_key_id,
           "ALIYUN_SMS_ACCESS_KEY_SECRET": sms.access_key_secret, "ALIYUN_SMS_ENDPOINT": sms.url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    servers: list[TestServer] = []

    async def start() -> Any:
        app = create_app(GatewayConfig.from_env())
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return app

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def gateway(gateway_factory):
    return await gateway_factory()


async def eventually(check, seconds: float = 10.0) -> None:
    """Wait for the gateway's consumer (it blocks up to 1 s per read) to have done its work."""
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not delivered in time")


async def test_requests_on_the_stream_reach_wechat_and_sms(gateway, fakes, redis):
    wechat, sms = fakes
    assert gateway[DELIVERER_KEY].channels == ("web", "wechat", "sms")
    openid, phone = "o" + secrets.token_hex(14), f"137{secrets.randbelow(10**8):08d}"
    outage = {"area": "江宁区东山街道", "start": "09:00", "end": "17:00", "reason": "线路检修"}
    to_wechat = await redis.xadd(STREAM, {
        "conversation_id": f"wechat:{openid}", "purpose": "notice", "kind": "outage_notice",
        "params": json.dumps(outage, ensure_ascii=False), "urgent": "0", "requested_by": "test"})
    to_sms = await redis.xadd(STREAM, {
        "conversation_id": f"sms:{phone}", "purpose": "notice", "kind": "verification_code",
        "params": json.dumps({"code": "864213"}), "urgent": "1",
        "requested_by": "action_send_verification_code"})

    async def recorded() -> bool:
        return all([await redis.exists(RESULT_PREFIX + e.decode()) for e in (to_wechat, to_sms)])

    await eventually(recorded)
    for entry in (to_wechat, to_sms):
        assert await redis.hget(RESULT_PREFIX + entry.decode(), "status") == b"sent"
    (template,) = wechat.templates_to(openid)
    assert template["template_id"] == "TPL-outage"
    assert template["data"]["thing1"] == {"value": "江宁区东山街道"}
    assert [(s["template"], s["params"]) for s in sms.sent if s["phone"] == phone] == [
        ("SMS_900000009", {"code": "864213"})]


async def test_legacy_opt_outs_are_honoured_after_a_gateway_start(fakes, redis, gateway_factory):
    wechat, sms = fakes
    openid, phone = "o" + secrets.token_hex(14), f"137{secrets.randbelow(10**8):08d}"
    await redis.set(f"pd:optout:wechat:{openid}", "1700000000")   # written by the old code
    await redis.hset("pd:sms:optout", phone, "1700000000")
    await redis.hdel(DONE_KEY, f"optout:{OPT_OUT_KEY}")  # as on the first start after the upgrade
    app = await gateway_factory()
    deliver = app[DELIVERER_KEY].deliver
    outage = Notice("outage_notice", {"area": "江宁区东山街道", "start": "09:00", "end": "17:00",
                                      "reason": "线路检修"})
    for conversation_id in (f"wechat:{openid}", f"sms:{phone}"):
        assert await deliver(conversation_id, outage, "notice") == \
            DeliveryResult("skipped", "opted_out")
    assert await redis.exists(f"pd:optout:wechat:{openid}") == 0
    assert await redis.hexists("pd:sms:optout", phone) == 0
    assert wechat.templates_to(openid) == []
    assert [s for s in sms.sent if s["phone"] == phone] == []


async def test_an_opted_out_number_still_gets_the_code_it_asked_for(gateway, fakes, redis):
    _, sms = fakes
    phone = f"136{secrets.randbelow(10**8):08d}"
    await gateway[DELIVERER_KEY].optouts.opt_out(f"sms:{phone}")   # 退订 earlier
    entry = await redis.xadd(STREAM, {
        "conversation_id": f"sms:{phone}", "purpose": "notice", "kind": "verification_code",
        "params": json.dumps({"code": "864213"}), "urgent": "0",
        "requested_by": "action_send_verification_code"})

    async def recorded() -> bool:
        return bool(await redis.exists(RESULT_PREFIX + entry.decode()))

    await eventually(recorded)
    assert await redis.hget(RESULT_PREFIX + entry.decode(), "status") == b"sent"
    assert [(s["template"], s["params"]) for s in sms.sent if s["phone"] == phone] == [
        ("SMS_900000009", {"code": "864213"})]
