"""The /wechat webhook end to end: gateway apps (create_app) on loopback, real Redis, the fake
WeChat API and the fake of Rasa's REST contract (Rasa is not under test here)."""
from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from channels.options import options_key
from channels.wechat.adapter import record_interaction, undeliverable_key
from channels.optout import OptOutStore
from channels.wechat.webhook import template_status_key
from channels.wechat import texts
from tests.channels.wechat.conftest import AES_KEY, NEW_AES_KEY
from fakes.rasa_rest import LONG_SENTENCE
from fakes.wechat_api import WeChatPusher, message_xml, wechat_signature


def openid() -> str:
    return "o" + secrets.token_urlsafe(20).replace("-", "A").replace("_", "B")[:27]


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


# --- URL verification ---------------------------------------------------------------------

async def test_server_url_verification(make_gateways):
    gw = await make_gateways()
    pusher = gw.pusher()
    assert await pusher.verify_url(gw.session, echostr="5837397520665436492") == (200, "5837397520665436492")
    forged = WeChatPusher(gw.urls[0], "not-the-token", gw.env["WECHAT_APP_ID"])
    status, _ = await forged.verify_url(gw.session)
    assert status == 403
    status, _ = await pusher.verify_url(gw.session, timestamp=str(int(time.time()) - 3600))
    assert status == 403


# --- modes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
async def test_text_message_is_acknowledged_at_once_and_answered_by_customer_service_api(make_gateways, mode):
    gw = await make_gateways(WECHAT_ENCRYPT_MODE=mode)
    user = openid()
    started = time.monotonic()
    status, body = await gw.pusher().post(gw.session, gw.pusher().text_fields(user, "你好 查电费"))
    assert (status, body) == (200, "success")
    assert time.monotonic() - started < 1
    await until(lambda: gw.wechat_api.texts_to(user))
    assert gw.wechat_api.texts_to(user) == ["收到：你好 查电费"]
    assert gw.rasa.received[f"wechat:{user}"] == ["你好 查电费"]


async def test_answers_and_the_gateways_own_texts_go_through_the_deliverer(make_gateways):
    from prometheus_client import REGISTRY

    def delivered() -> float:
        return REGISTRY.get_sample_value("powerdesk_gateway_deliveries_total", {
            "channel": "wechat", "purpose": "reply", "status": "sent", "reason": ""}) or 0.0

    gw = await make_gateways()
    user, before = openid(), delivered()
    await gw.pusher().post(gw.session, gw.pusher().text_fields(user, "你好"))
    await until(lambda: gw.wechat_api.texts_to(user))
    assert gw.wechat_api.texts_to(user) == ["收到：你好"]
    await until(lambda: delivered() == before + 1)


async def test_safe_mode_refuses_plaintext_and_plain_mode_without_key_refuses_ciphertext(make_gateways):
    gw = await make_gateways(WECHAT_ENCRYPT_MODE="safe")
    user = openid()
    status, _ = await gw.pusher(mode="plain").post(gw.session, gw.pusher().text_fields(user, "明文"))
    assert status == 403
    await asyncio.sleep(0.3)
    assert not gw.rasa.received.get(f"wechat:{user}")


async def test_previous_aes_key_still_accepted_during_rotation(make_gateways):
    gw = await make_gateways(WECHAT_AES_KEY=NEW_AES_KEY, WECHAT_AES_KEY_PREVIOUS=AES_KEY)
    user = openid()
    old, new = gw.pusher(aes_key=AES_KEY), gw.pusher(aes_key=NEW_AES_KEY)
    assert (await old.post(gw.session, old.text_fields(user, "旧密钥")))[0] == 200
    assert (await new.post(gw.session, new.text_fields(user, "新密钥")))[0] == 200
    unknown = gw.pusher(aes_key="0123456789abcdefghijklmnopqrstuvwxyzABCDEFG")
    assert (await unknown.post(gw.session, unknown.text_fields(user, "未知密钥")))[0] == 403
    await until(lambda: len(gw.wechat_api.texts_to(user)) == 2)
    assert gw.rasa.received[f"wechat:{user}"] == ["旧密钥", "新密钥"]


# --- forged and malformed requests -------------------------------------------------------------

async def test_forged_and_malformed_requests_are_refused_and_leave_no_trace(make_gateways, redis):
    gw = await make_gateways()
    user = openid()
    pusher = gw.pusher()
    fields = pusher.text_fields(user, "伪造")
    query, body = pusher.build(fields)

    bad_sig = dict(query, signature="0" * 40)
    bad_msg_sig = dict(query, msg_signature="0" * 40)
    stale_query, stale_body = pusher.build(fields, timestamp=str(int(time.time()) - 301))
    no_sig = {k: v for k, v in query.items() if k != "signature"}
    plain_q = pusher.signed_query()
    cases = [
        (bad_sig, body, 403),
        (bad_msg_sig, body, 403),
        (stale_query, stale_body, 403),
        (no_sig, body, 400),
        (dict(plain_q, encrypt_type="aes", msg_signature="x"), "<xml><Encrypt>", 400),
        (query, "<xml>" + "A" * 70000 + "</xml>", 400),
    ]
    for q, b, expected in cases:
        status, _ = await pusher.post_raw(gw.session, q, b)
        assert status == expected, (q, status)

    # XML bombs and XXE inside a correctly encrypted and signed envelope are still refused.
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            f"<xml><FromUserName>{user}</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
            "<Content>&b;</Content><MsgId>1</MsgId></xml>")
    from channels.wechat.crypto import WeChatSecurity
    security = WeChatSecurity(gw.env["WECHAT_TOKEN"], gw.env["WECHAT_APP_ID"], (AES_KEY,))
    q = pusher.signed_query()
    encrypted, msg_signature = security.encrypt(bomb, q["timestamp"], q["nonce"])
    status, _ = await pusher.post_raw(gw.session, dict(q, encrypt_type="aes", msg_signature=msg_signature),
                                      f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    assert status == 400

    await asyncio.sleep(0.3)
    assert not gw.rasa.received.get(f"wechat:{user}")
    assert not gw.wechat_api.texts_to(user)
    from channels.wechat import WECHAT_CHANNEL

    dispatcher = gw.apps[0][WECHAT_CHANNEL].dispatcher
    assert await redis.exists(dispatcher.once_key(f"msg:{fields['MsgId']}"),
                              f"pd:wechat:seen:msg:{fields['MsgId']}") == 0
    assert await redis.exists(dispatcher.queue_key(user)) == 0


# --- retries / dedupe across instances ------------------------------------------------------------

async def test_retries_landing_on_two_instances_get_one_answer(make_gateways):
    gw = await make_gateways(count=2)
    user = openid()
    p0, p1 = gw.pusher(0), gw.pusher(1)
    fields = p0.text_fields(user, "重复消息")
    event = p0.event_fields(user, "subscribe")
    results = await asyncio.gather(*(
        (p0 if i % 2 else p1).post(gw.session, f) for i in range(6) for f in (fields, event)))
    assert all(r == (200, "success") for r in results)
    await until(lambda: len(gw.wechat_api.texts_to(user)) >= 2)
    await asyncio.sleep(0.5)
    assert sorted(gw.wechat_api.texts_to(user)) == sorted([texts.WELCOME, "收到：重复消息"])
    assert gw.rasa.received[f"wechat:{user}"] == ["重复消息"]


# --- message types ------------------------------------------------------------------------------

async def test_voice_image_location_link_and_unsupported(make_gateways):
    gw = await make_gateways()
    p = gw.pusher()
    user = openid()
    base = {"ToUserName": p.account, "FromUserName": user}
    pushes = [
        dict(base, CreateTime=int(time.time()), MsgType="voice", MediaId="m1", Format="amr",
             Recognition="我家停电了", MsgId=p.next_msgid()),
        dict(base, CreateTime=int(time.time()), MsgType="voice", MediaId="m2", Format="amr",
             MsgId=p.next_msgid()),
        dict(base, CreateTime=int(time.time()), MsgType="image", PicUrl="http://x/y.jpg", MediaId="m3",
             MsgId=p.next_msgid()),
        dict(base, CreateTime=int(time.time()), MsgType="location", Location_X="32.06", Location_Y="118.79",
             Scale=15, Label="南京市鼓楼区中山路", MsgId=p.next_msgid()),
        dict(base, CreateTime=int(time.time()), MsgType="link", Title="停电公告", Description="d",
             Url="http://x/", MsgId=p.next_msgid()),
        dict(base, CreateTime=int(time.time()), MsgType="video", MediaId="m4", ThumbMediaId="t",
             MsgId=p.next_msgid()),
    ]
    for fields in pushes:
        assert await p.post(gw.session, fields) == (200, "success")
    await until(lambda: len(gw.wechat_api.texts_to(user)) == 6)
    assert gw.wechat_api.texts_to(user) == [
        "收到：我家停电了", texts.VOICE_UNRECOGNISED, texts.IMAGE,
        texts.LOCATION.format(label="南京市鼓楼区中山路"), texts.LINK.format(title="停电公告"),
        texts.UNSUPPORTED]
    assert gw.rasa.received[f"wechat:{user}"] == ["我家停电了"]


# --- events ------------------------------------------------------------------------------------

async def test_subscribe_unsubscribe_scan_and_template_reports(make_gateways, redis):
    gw = await make_gateways()
    p = gw.pusher()
    user = openid()
    assert await p.post(gw.session, p.event_fields(user, "subscribe", "qrscene_hall_A01")) == (200, "success")
    await until(lambda: gw.wechat_api.texts_to(user))
    welcome = gw.wechat_api.texts_to(user)[0]
    assert welcome.startswith(texts.WELCOME) and "hall_A01" in welcome
    assert not await OptOutStore(redis).is_opted_out(f"wechat:{user}")

    assert await p.post(gw.session, p.event_fields(user, "unsubscribe", create_time=int(time.time()) + 1)) \
        == (200, "success")
    assert await OptOutStore(redis).is_opted_out(f"wechat:{user}")
    assert await p.post(gw.session, p.event_fields(user, "subscribe", "", create_time=int(time.time()) + 2)) \
        == (200, "success")
    assert not await OptOutStore(redis).is_opted_out(f"wechat:{user}")

    assert await p.post(gw.session, p.event_fields(user, "SCAN", "hall_B02", create_time=int(time.time()) + 3,
                                                     Ticket="t")) == (200, "success")
    await until(lambda: texts.WELCOME_BACK in gw.wechat_api.texts_to(user))

    report = p.event_fields(user, "TEMPLATESENDJOBFINISH", MsgID=200163836, Status="failed:user block")
    assert await p.post(gw.session, report) == (200, "success")
    assert await redis.hget(template_status_key("200163836"), "status") == b"failed:user block"


async def test_menu_click_sends_intent_payload_and_numbers_pick_options(make_gateways, redis):
    gw = await make_gateways()
    p = gw.pusher()
    user = openid()
    assert await p.post(gw.session, p.event_fields(user, "CLICK", "intent:query_bill")) == (200, "success")
    await until(lambda: gw.wechat_api.texts_to(user))
    assert gw.wechat_api.texts_to(user)[0] == "请问您要查询哪个月的电费？\n1. 本月\n2. 上个月\n请回复序号进行选择。"
    assert await redis.exists(options_key(f"wechat:{user}"))
    assert await p.post(gw.session, p.text_fields(user, "２")) == (200, "success")
    await until(lambda: len(gw.wechat_api.texts_to(user)) == 2)
    assert gw.rasa.received[f"wechat:{user}"] == ["/query_bill", '/inform{"month":"上个月"}']
    assert await redis.exists(options_key(f"wechat:{user}")) == 0  # the answer offered no options
    # Without options on offer a number is just text.
    assert await p.post(gw.session, p.text_fields(user, "1")) == (200, "success")
    await until(lambda: len(gw.wechat_api.texts_to(user)) == 3)
    assert gw.rasa.received[f"wechat:{user}"][-1] == "1"
    # A key that is not an intent key gets a polite answer, nothing reaches Rasa.
    assert await p.post(gw.session, p.event_fields(user, "CLICK", "V1001_UNKNOWN",
                                                     create_time=int(time.time()) + 5)) == (200, "success")
    await until(lambda: len(gw.wechat_api.texts_to(user)) == 4)
    assert gw.wechat_api.texts_to(user)[-1] == texts.MENU_UNAVAILABLE
    assert len(gw.rasa.received[f"wechat:{user}"]) == 3


async def test_long_answer_is_split_at_sentence_ends(make_gateways):
    gw = await make_gateways()
    p = gw.pusher()
    user = openid()
    await p.post(gw.session, p.text_fields(user, "长文本"))
    await until(lambda: gw.wechat_api.texts_to(user))
    await asyncio.sleep(0.3)
    parts = gw.wechat_api.texts_to(user)
    assert len(parts) >= 2
    assert all(len(x.encode()) <= 2048 and x.endswith("。") for x in parts)
    assert "".join(parts) == LONG_SENTENCE * 40


# --- API failures -------------------------------------------------------------------------------

async def test_token_expiring_mid_run_and_api_failures_of_each_kind(make_gateways, redis):
    gw = await make_gateways(count=2)
    api = gw.wechat_api
    p = gw.pusher()
    users = [openid() for _ in range(5)]
    await p.post(gw.session, p.text_fields(users[0], "第一条"))
    await until(lambda: api.texts_to(users[0]))
    tokens_before = api.token_requests

    api.expire_tokens()                       # 42001 mid-run: one refresh, message still delivered
    await gw.pusher(1).post(gw.session, p.text_fields(users[0], "第二条"))
    await until(lambda: len(api.texts_to(users[0])) == 2)
    assert api.token_requests == tokens_before + 1

    api.fail_next("/cgi-bin/message/custom/send", -1, times=2)   # busy: retried, delivered
    await p.post(gw.session, p.text_fields(users[1], "系统繁忙也要送达"))
    await until(lambda: api.texts_to(users[1]))

    api.fail_next("/cgi-bin/message/custom/send", 45009, times=1)  # throttled: retried
    await p.post(gw.session, p.text_fields(users[2], "限流"))
    await until(lambda: api.texts_to(users[2]))

    for user, code in ((users[3], 45015), (users[4], 48002)):      # stop and record
        api.refuse_user(user, code)
        await p.post(gw.session, p.text_fields(user, "窗口外"))
    await until(lambda: all(api.calls.count(("/cgi-bin/message/custom/send", c)) for c in (45015, 48002)))
    await asyncio.sleep(0.2)
    assert api.calls.count(("/cgi-bin/message/custom/send", 45015)) == 1   # no retry loop
    assert (await redis.hget(undeliverable_key(users[3]), "errcode")) == b"45015"
    assert (await redis.hget(undeliverable_key(users[4]), "errcode")) == b"48002"
    assert await OptOutStore(redis).is_opted_out(f"wechat:{users[4]}")
    assert not await OptOutStore(redis).is_opted_out(f"wechat:{users[3]}")


# --- burst ---------------------------------------------------------------------------------------

async def test_burst_of_200_users_on_two_instances_one_answer_each_in_order(make_gateways):
    gw = await make_gateways(count=2)
    users = [openid() for _ in range(200)]
    pushers = [gw.pusher(0), gw.pusher(1)]

    async def talk(i: int, user: str) -> None:
        for n in range(3):
            status, body = await pushers[(i + n) % 2].post(gw.session, pushers[0].text_fields(user, f"消息{n}"))
            assert (status, body) == (200, "success")

    await asyncio.gather(*(talk(i, u) for i, u in enumerate(users)))
    await until(lambda: len(gw.wechat_api.sent) >= 600, timeout=60)
    await asyncio.sleep(0.5)
    for user in users:
        assert gw.wechat_api.texts_to(user) == ["收到：消息0", "收到：消息1", "收到：消息2"]
    assert gw.rasa.overlaps == []


# --- disabled -----------------------------------------------------------------------------------

async def test_channel_disabled_without_token(make_gateways):
    gw = await make_gateways(WECHAT_TOKEN="")
    async with gw.session.post(f"{gw.urls[0]}/wechat", data=message_xml({"a": "b"})) as resp:
        assert resp.status == 503
    async with gw.session.get(f"{gw.urls[0]}/wechat", params={"echostr": "x"}) as resp:
        assert resp.status == 503
    assert wechat_signature("a", "b") == wechat_signature("b", "a")


# --- outbound from other parts of the gateway (hand-off agents) ------------------------------------

async def test_deliver_sends_agent_replies_in_order_with_numbered_options(make_gateways, redis):
    from channels.delivery import DELIVERER_KEY
    from channels.messages import Button, Reply

    gw = await make_gateways()
    user = openid()
    deliver = gw.apps[0][DELIVERER_KEY].deliver
    await record_interaction(redis, user)  # the customer wrote earlier: inside the 48-hour window
    await deliver(f"wechat:{user}", [Reply("您好，我是人工客服小王。"), Reply(
        "请问问题解决了吗？", (Button("已解决", "/affirm"), Button("未解决", "/deny")))], "agent")
    await until(lambda: len(gw.wechat_api.texts_to(user)) == 2)
    assert gw.wechat_api.texts_to(user) == ["您好，我是人工客服小王。",
                                           "请问问题解决了吗？\n1. 已解决\n2. 未解决\n请回复序号进行选择。"]
    p = gw.pusher()
    await p.post(gw.session, p.text_fields(user, "1"))
    await until(lambda: gw.rasa.received.get(f"wechat:{user}"))
    assert gw.rasa.received[f"wechat:{user}"] == ["/affirm"]


async def test_redis_down_leaves_pushes_unacknowledged_for_wechat_to_retry(make_gateways):
    from tests.support.ports import free_port

    gw = await make_gateways(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    user = openid()
    status, _ = await gw.pusher().post(gw.session, gw.pusher().text_fields(user, "Redis 挂了"))
    assert status == 503
    assert not gw.rasa.received.get(f"wechat:{user}")


async def test_acknowledge_only_instance_with_a_separate_answering_instance(make_gateways):
    front = await make_gateways(WECHAT_WORKERS="0")
    user = openid()
    p = front.pusher()
    for n in range(3):
        assert await p.post(front.session, p.text_fields(user, f"分离{n}")) == (200, "success")
    await asyncio.sleep(0.5)
    assert not front.wechat_api.texts_to(user)  # nobody answers yet: the front instance only queues
    await make_gateways()                        # an answering instance joins
    await until(lambda: len(front.wechat_api.texts_to(user)) == 3)
    assert front.wechat_api.texts_to(user) == ["收到：分离0", "收到：分离1", "收到：分离2"]


async def test_two_menu_clicks_in_the_same_second_are_both_answered(make_gateways):
    gw = await make_gateways()
    p = gw.pusher()
    user = openid()
    now = int(time.time())
    for key in ("intent:query_outage", "intent:take_number"):
        for _retry in range(2):
            assert await p.post(gw.session, p.event_fields(user, "CLICK", key, create_time=now)) == (200, "success")
    await until(lambda: len(gw.wechat_api.texts_to(user)) == 2)
    await asyncio.sleep(0.3)
    assert gw.rasa.received[f"wechat:{user}"] == ["/query_outage", "/take_number"]
