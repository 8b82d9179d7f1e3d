"""The hand-off in real gateways (create_app) on loopback: a request from the stream opens it,
the customer's messages reach the agent and not Rasa (the REST fake counts), Rasa's tracker gets
pause/resume, agents answer on the customer's channel (web chat across two instances, WeChat
customer-service messages through the WeChat fake, SMS through the Aliyun fake) and the 1-5
rating is stored. Business hours are open ("always") here; they are pinned in test_service."""
from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import secrets
import time

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from channels.handoff.service import CLAIMED_TEXT, RATING_TEXT, THANKS_TEXT, WAITING_TEXT
from channels.keys import HANDOFF_KEY
from fakes.aliyun_sms import FakeAliyunSms, up_item
from fakes.rasa_rest import FakeRasaRest
from fakes.webclient import WebClient
from fakes.wechat_api import FakeWeChatApi, WeChatPusher
from integrations.customer_store import HANDOFF_STREAM


async def until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


@pytest.fixture
async def rasa_fake():
    fake = FakeRasaRest()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def make_gateways(handoff_redis_url, hredis, rasa_fake, monkeypatch):
    """``await make_gateways(count, **env)`` → the started apps and their base URLs."""
    from channels.app import create_app
    from channels.config import GatewayConfig

    for key in [k for k in os.environ if k.startswith(("WECHAT_", "SMS_", "GATEWAY_", "RASA_", "HANDOFF_",
                                                       "ALIYUN_SMS", "TENCENT_SMS"))]:
        monkeypatch.delenv(key)
    servers: list[TestServer] = []

    async def make(count: int = 2, **env: str):
        values = {"REDIS_URL": handoff_redis_url, "RASA_URL": rasa_fake.url, "HANDOFF_HOURS": "always",
                  "DELIVERY_QUIET_HOURS": "off", **env}
        apps, urls = [], []
        for _ in range(count):
            app = create_app(GatewayConfig.from_env(values))
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            servers.append(server)
            apps.append(app)
            urls.append(str(server.make_url("")).rstrip("/"))
        return apps, urls

    yield make
    for server in servers:
        await server.close()


async def request_handoff(redis: Redis, cid: str, **extra: str) -> None:
    """What action_request_human appends (the extended fields included)."""
    await redis.xadd(HANDOFF_STREAM, {
        "conversation_id": cid, "reason": "customer: 转人工",
        "requested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "queue": "general", "customer_type": "residential", "channel": cid.partition(":")[0],
        "trigger": "request_human", **extra})


async def test_web_customer_on_one_instance_agent_on_the_other(make_gateways, hredis, rasa_fake):
    (app_a, app_b), (url_a, _) = await make_gateways(2)
    client = await WebClient().connect(url_a)
    try:
        sid = await client.session()
        cid = f"web:{sid}"
        await client.say("你好")
        assert (await client.next())["text"] == "收到：你好"
        await request_handoff(hredis, cid)
        assert (await client.next())["text"] == WAITING_TEXT
        assert rasa_fake.tracker_events[cid][0]["event"] == "pause"

        service_b = app_b[HANDOFF_KEY]
        record = await service_b.store.get(cid)
        assert record["state"] == "waiting" and record["channel"] == "web"
        skipped = empty_deliveries()
        # The agent's delivery holds the conversation's delivery lock: the customer's messages,
        # which get no answer, neither wait for it nor take it.
        await hredis.set(f"pd:delivery:turn:{cid}", "agent-reply-in-progress", px=5000)
        await client.say("我家停电了")
        await client.say("快来人")
        texts = [m["text"] for m in await until(  # not 5 s: the lock's expiry
            lambda: _senders(service_b.store, cid, "customer", 2), timeout=2)]
        assert texts == ["我家停电了", "快来人"]
        assert rasa_fake.received[cid] == ["你好"]  # never reached Rasa
        assert await hredis.get(f"pd:seen:{cid}")  # still marked as in use
        assert await until(lambda: empty_deliveries() == skipped + 2, timeout=2)
        await hredis.delete(f"pd:delivery:turn:{cid}")
        with pytest.raises(asyncio.TimeoutError):  # the waiting notice was said once
            await client.next(timeout=0.5)

        assert await service_b.claim(cid, "alice")
        assert (await client.next())["text"] == CLAIMED_TEXT
        result = await service_b.agent_reply(cid, "alice", "您好，请问您的户号是多少？")
        assert result.status == "sent"
        assert (await client.next())["text"] == "您好，请问您的户号是多少？"
        await client.say("3201234567")
        await until(lambda: _senders(service_b.store, cid, "customer", 3))

        assert await service_b.close(cid, "alice")
        assert (await client.next())["text"] == RATING_TEXT
        assert [e["event"] for e in rasa_fake.tracker_events[cid]] == ["pause", "resume", "slot"]
        await client.say("５ 很满意")
        assert (await client.next())["text"] == THANKS_TEXT
        stats = await app_a[HANDOFF_KEY].store.stats()
        assert stats["ratings"]["agents"]["alice"]["distribution"]["5"] == 1
        assert (await service_b.store.get(cid))["rating_comment"] == "很满意"
        await client.say("查电费")  # back to the assistant
        assert (await client.next())["text"] == "收到：查电费"
        assert rasa_fake.received[cid] == ["你好", "查电费"]
    finally:
        await client.close()


def empty_deliveries() -> float:
    return REGISTRY.get_sample_value("powerdesk_gateway_deliveries_total", {
        "channel": "web", "purpose": "reply", "status": "skipped", "reason": "empty"}) or 0.0


async def _senders(store, cid: str, sender: str, count: int) -> list[dict] | None:
    found = [m for m in await store.messages(cid) if m["sender"] == sender]
    return found if len(found) >= count else None


async def test_a_reply_other_than_a_score_goes_back_to_the_assistant(make_gateways, hredis, rasa_fake):
    (app,), (url,) = await make_gateways(1)
    client = await WebClient().connect(url)
    try:
        cid = f"web:{await client.session()}"
        service = app[HANDOFF_KEY]
        await service.take_over(cid, "bob", queue="vip")  # an agent takes over from the console
        assert (await client.next())["text"] == CLAIMED_TEXT
        assert rasa_fake.tracker_events[cid][0]["event"] == "pause"
        await client.say("好的")
        await until(lambda: _senders(service.store, cid, "customer", 1))
        await service.close(cid, "bob")
        assert (await client.next())["text"] == RATING_TEXT
        await client.say("12345")
        assert (await client.next())["text"] == "收到：12345"
        assert (await service.store.get(cid))["state"] == "closed"
        assert (await service.store.stats())["ratings"]["agents"] == {}
    finally:
        await client.close()


async def test_wechat_customer_answered_by_an_agent(make_gateways, hredis, rasa_fake):
    api = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    await api.start()
    try:
        token = "tok" + secrets.token_hex(6)
        (app_a, app_b), (url_a, _) = await make_gateways(
            2, WECHAT_TOKEN=token, WECHAT_APP_ID=api.app_id, WECHAT_APP_SECRET=api.app_secret,
            WECHAT_ENCRYPT_MODE="plain", WECHAT_API_BASE_URL=api.base_url)
        pusher = WeChatPusher(url_a, token, api.app_id)
        openid = "o" + secrets.token_hex(13)
        cid = f"wechat:{openid}"
        async with aiohttp.ClientSession() as session:
            await pusher.post(session, pusher.text_fields(openid, "你好"))
            await until(lambda: api.texts_to(openid))
            await request_handoff(hredis, cid, channel="wechat")
            await until(lambda: WAITING_TEXT in api.texts_to(openid))
            await pusher.post(session, pusher.text_fields(openid, "电表不走了"))
            service = app_b[HANDOFF_KEY]
            assert [m["text"] for m in await until(lambda: _senders(service.store, cid, "customer", 1))] \
                == ["电表不走了"]
            assert rasa_fake.received[cid] == ["你好"]
            assert await service.claim(cid, "carol")
            assert (await service.agent_reply(cid, "carol", "请提供户号")).status == "sent"
            await until(lambda: "请提供户号" in api.texts_to(openid))
            await service.close(cid, "carol")
            await until(lambda: RATING_TEXT in api.texts_to(openid))
            await pusher.post(session, pusher.text_fields(openid, "4"))
            await until(lambda: THANKS_TEXT in api.texts_to(openid))
        record = await service.store.get(cid)
        assert record["rating"] == "4" and record["agent"] == "carol"
    finally:
        await api.close()


SMS_TEMPLATES = {
    "generic_reply": {"text": "${content}", "params": ["content"], "max_param_length": 35,
                      "aliyun": "SMS_900000001", "tencent": "900001"},
    "fallback": {"text": "您好，短信暂不能办理该业务。", "params": [], "aliyun": "SMS_900000002",
                 "tencent": "900002"},
}


async def test_sms_customer_answered_by_an_agent(make_gateways, hredis, rasa_fake, tmp_path):
    templates = tmp_path / "sms_templates.yml"
    templates.write_text(yaml.safe_dump({"version": 1, "templates": SMS_TEMPLATES}, allow_unicode=True),
                         encoding="utf-8")
    fake = FakeAliyunSms(sign_names=("国网供电",),
                         templates={t["aliyun"]: tuple(t["params"]) for t in SMS_TEMPLATES.values()})
    await fake.start()
    try:
        callback_token = secrets.token_hex(8)
        (app_a, app_b), (url_a, _) = await make_gateways(
            2, SMS_PROVIDER="aliyun", SMS_SIGN_NAME="国网供电", SMS_TEMPLATES_FILE=str(templates),
            SMS_CALLBACK_TOKEN=callback_token, SMS_QUIET_HOURS="off",
            ALIYUN_SMS_ACCESS_KEY_ID=fake.access_key_id, ALIYUN_SMS_ACCESS_KEY_SECRET=fake.access_key_secret,
            ALIYUN_SMS_ENDPOINT=fake.url)
        phone = "139" + f"{secrets.randbelow(10**8):08d}"
        cid = f"sms:{phone}"

        def texts() -> list[str]:
            return ["".join(s["params"].values()) for s in fake.sent if s["phone"] == phone]

        async with aiohttp.ClientSession() as session:
            async def up(text: str, seq: int) -> None:
                async with session.post(f"{url_a}/sms/aliyun/up?token={callback_token}",
                                        json=[up_item(phone, text, seq)]) as response:
                    assert response.status == 200

            await request_handoff(hredis, cid, channel="sms")
            await until(lambda: WAITING_TEXT in texts())
            await up("什么时候来电", 31001)
            service = app_b[HANDOFF_KEY]
            await until(lambda: _senders(service.store, cid, "customer", 1))
            assert rasa_fake.received[cid] == []
            assert await service.claim(cid, "dave")
            assert (await service.agent_reply(cid, "dave", "预计今晚8点前恢复供电")).status == "sent"
            await until(lambda: "预计今晚8点前恢复供电" in texts())
            await service.close(cid, "dave")
            await until(lambda: "请为本次服务评分：回复1-5" in "".join(texts()))
            await up("３分 一般", 31002)
            await until(lambda: THANKS_TEXT in texts())
        record = await service.store.get(cid)
        assert (record["rating"], record["rating_comment"]) == ("3", "一般")
    finally:
        await fake.close()
