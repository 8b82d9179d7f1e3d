"""The web chat outbox over real socket.io clients and two gateway instances on one Redis:
messages for an offline visitor wait in Redis (with a TTL) and arrive, in order, when the session
comes back on any instance; an online visitor gets them at once wherever its tab is."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from channels.delivery import DELIVERER_KEY
from channels.messages import Button, DeliveryResult, Notice, Reply
from channels.webchat import WEBCHAT_KEY
from channels.webchat_outbox import (GENERIC_NOTICE_TEXT, NOTICE_TEXTS, URGENT_MARK, notice_record_key,
                                     notice_reply, outbox_key, presence_key)
from fakes.webclient import WebClient

OUTAGE = Notice("outage_notice", {"area": "江宁区东山街道", "start": "11月30日09:00",
                                  "end": "11月30日17:00", "reason": "线路检修"})
# Quiet hours off: these tests run at any hour and are not about them.
ENV = {"WEBCHAT_OUTBOX_TTL_SECONDS": "3600", "DELIVERY_QUIET_HOURS": "off"}


async def online(redis, session_id: str) -> None:
    """Wait until an instance claimed the session's presence (it does so right after
    session_confirm, which the client may see first)."""
    for _ in range(200):
        if await redis.zcard(presence_key(session_id)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("session never claimed")


@pytest.fixture
async def clients():
    made: list[WebClient] = []

    async def connect(url: str) -> WebClient:
        client = await WebClient().connect(url)
        made.append(client)
        return client

    yield connect
    for client in made:
        await client.close()


async def test_offline_visitor_gets_the_messages_in_order_on_another_instance(
        make_web_gateway, clients, redis):
    first, second = await make_web_gateway(**ENV), await make_web_gateway(**ENV)
    session_id = uuid.uuid4().hex
    deliver = first.app[DELIVERER_KEY].deliver
    cid = f"web:{session_id}"
    assert await deliver(cid, [Reply("您好，人工客服小李已接入。")], "agent") == DeliveryResult("queued")
    assert await deliver(cid, OUTAGE, "notice") == DeliveryResult("queued")
    assert await deliver(cid, [Reply("请问还有其他问题吗？", (Button("没有了", "/deny"),))],
                         "reply") == DeliveryResult("queued")
    assert 3500 < await redis.ttl(outbox_key(session_id)) <= 3600
    assert await redis.llen(outbox_key(session_id)) == 4

    client = await clients(second.url)
    assert await client.session(session_id) == session_id
    events = [await client.next() for _ in range(4)]
    assert events == [
        {"text": "您好，人工客服小李已接入。"},
        {"text": "【停电通知】江宁区东山街道将于11月30日09:00至11月30日17:00停电，原因：线路检修。"
                 "给您带来不便，敬请谅解。"},
        {"notice": {"kind": "outage_notice", "params": dict(OUTAGE.params), "urgent": False}},
        {"text": "请问还有其他问题吗？",
         "quick_replies": [{"content_type": "text", "title": "没有了", "payload": "/deny"}]}]
    with pytest.raises(asyncio.TimeoutError):
        await client.next(timeout=0.3)  # each message once
    assert await redis.exists(outbox_key(session_id)) == 0  # removed once emitted


async def test_online_visitor_gets_it_at_once_from_another_instance(make_web_gateway, clients,
                                                                   redis):
    first, second = await make_web_gateway(**ENV), await make_web_gateway(**ENV)
    client = await clients(second.url)
    session_id = await client.session(None)
    await online(redis, session_id)
    result = await first.app[DELIVERER_KEY].deliver(
        f"web:{session_id}", [Reply("您的工单已派发，抢修人员正在赶来。")], "agent")
    assert result == DeliveryResult("sent")
    assert await client.next() == {"text": "您的工单已派发，抢修人员正在赶来。"}


async def test_a_visitor_who_left_is_offline_again_and_gets_it_on_return(
        make_web_gateway, clients, redis):
    gateway = await make_web_gateway(**ENV)
    client = await clients(gateway.url)
    session_id = await client.session(None)
    await online(redis, session_id)
    await client.close()
    await asyncio.sleep(0.1)  # the server sees the socket go
    await gateway.app[WEBCHAT_KEY].outbox.refresh()  # the periodic presence pass
    assert await redis.zcard(presence_key(session_id)) == 0
    result = await gateway.app[DELIVERER_KEY].deliver(f"web:{session_id}", OUTAGE, "notice")
    assert result == DeliveryResult("queued")

    returning = await clients(gateway.url)
    await returning.session(session_id)
    assert (await returning.next())["text"].startswith("【停电通知】江宁区东山街道")


async def test_a_message_before_session_request_also_drains_first(make_web_gateway, clients,
                                                                  rasa_fake):
    gateway = await make_web_gateway(**ENV)
    session_id = uuid.uuid4().hex
    await gateway.app[DELIVERER_KEY].deliver(f"web:{session_id}", [Reply("留言：已为您预约。")],
                                             "agent")
    client = await clients(gateway.url)
    await client.say("你好", session_id)  # adopts the session id without session_request
    assert await client.next() == {"text": "留言：已为您预约。"}
    assert await client.next() == {"text": "收到：你好"}


async def test_a_bad_session_id_is_skipped(make_web_gateway):
    gateway = await make_web_gateway(**ENV)
    assert await gateway.app[DELIVERER_KEY].deliver("web:abc", [Reply("x")], "reply") == \
        DeliveryResult("skipped", "invalid_user")


def test_notice_cards_mask_accounts_and_fall_back_to_a_generic_text():
    bill = notice_reply(Notice("bill_due", {"account": "3201234567", "month": "11月",
                                            "amount": "128.50", "due_date": "12月15日"}))
    assert bill.text == "【缴费提醒】您户号******4567的11月电费128.50元，请于12月15日前缴纳。"
    assert bill.custom["notice"]["params"]["account"] == "3201234567"  # for the page's own use
    assert notice_reply(Notice("campaign_x", {"a": "b"})).text == GENERIC_NOTICE_TEXT


async def test_a_long_backlog_arrives_whole_and_in_order(make_web_gateway, clients, redis):
    gateway = await make_web_gateway(**ENV)
    session_id = uuid.uuid4().hex
    for n in range(120):  # more than one drain batch
        await gateway.app[DELIVERER_KEY].deliver(f"web:{session_id}", [Reply(f"第{n}条")], "agent")
    client = await clients(gateway.url)
    await client.session(session_id)
    assert [(await client.next())["text"] for _ in range(120)] == [f"第{n}条" for n in range(120)]
    assert await redis.exists(outbox_key(session_id)) == 0


async def test_a_live_answer_waits_behind_messages_still_in_the_outbox(
        make_web_gateway, clients, redis, rasa_fake):
    """In-turn answers go through the deliverer too: one a tab of this instance gets at once
    still comes after what the session's outbox holds (an agent message not drained yet)."""
    from prometheus_client import REGISTRY

    gateway = await make_web_gateway(**ENV)
    client = await clients(gateway.url)
    session_id = await client.session(None)
    await online(redis, session_id)
    # Appended as another instance's adapter would, its wake-up not arrived yet.
    await redis.rpush(outbox_key(session_id), '{"text": "人工客服：请稍等。"}')
    labels = {"channel": "web", "purpose": "reply", "status": "sent", "reason": ""}
    before = REGISTRY.get_sample_value("powerdesk_gateway_deliveries_total", labels) or 0.0
    await client.say("你好", session_id)
    assert [await client.next(), await client.next()] == [{"text": "人工客服：请稍等。"},
                                                          {"text": "收到：你好"}]
    assert REGISTRY.get_sample_value("powerdesk_gateway_deliveries_total", labels) == before + 1
    await client.say("再问一句", session_id)  # nothing waits now: emitted at once
    assert await client.next() == {"text": "收到：再问一句"}
    assert await redis.exists(outbox_key(session_id)) == 0


async def test_a_keyed_notice_is_appended_once_per_session(make_web_gateway, clients, redis):
    gateway = await make_web_gateway(**ENV)
    session_id = uuid.uuid4().hex
    deliver = gateway.app[DELIVERER_KEY].deliver
    key = f"bc:outage:JH{uuid.uuid4().hex[:6]}:notice:3201234567"
    keyed = Notice(OUTAGE.kind, OUTAGE.params, key=key)
    assert await deliver(f"web:{session_id}", keyed, "notice") == DeliveryResult("queued")
    assert await deliver(f"web:{session_id}", keyed, "notice") == DeliveryResult("queued", "duplicate")
    assert await redis.llen(outbox_key(session_id)) == 2  # one notice: its text and its card
    assert await redis.get(notice_record_key(session_id, key)) in (b"queued", "queued")
    client = await clients(gateway.url)
    assert await client.session(session_id) == session_id
    text, card = await client.next(), await client.next()
    assert text["text"].startswith("【停电通知】")
    assert card == {"notice": {"kind": "outage_notice", "params": dict(OUTAGE.params), "urgent": False}}
    with pytest.raises(asyncio.TimeoutError):
        await client.next(timeout=0.3)
    # Online now: a repeat still sends nothing; another key is another notice, emitted at once.
    await online(redis, session_id)
    assert (await deliver(f"web:{session_id}", keyed, "notice")).reason == "duplicate"
    other = Notice(OUTAGE.kind, OUTAGE.params, urgent=True, key=key + "x")
    assert await deliver(f"web:{session_id}", other, "notice") == DeliveryResult("sent")
    assert (await client.next())["text"].startswith(URGENT_MARK + "【停电通知】")


def test_every_broadcast_kind_has_a_web_text():
    params = {"account": "3201234567", "month": "2026年10月", "amount": "123.45",
              "due_date": "2026年11月25日", "months": "2026年9月、2026年10月", "balance": "32.50",
              "threshold": "50.00", "area": "百家湖社区", "start": "11月29日 08:30",
              "end": "11月29日 17:30", "reason": "10千伏线路检修", "restored_at": "11月28日 14:05"}
    for kind in ("bill_summary", "bill_due", "arrears", "low_balance", "outage_notice",
                 "power_restored"):
        assert kind in NOTICE_TEXTS
        text = notice_reply(Notice(kind, params)).text
        assert "{" not in text and "3201234567" not in text and "******4567" in text \
            or kind in ("outage_notice", "power_restored"), text


async def test_an_offline_session_queues_on_a_redis_cluster(redis_cluster_url):
    """A Cluster pipeline refuses PUBLISH: the wake-up goes after it; the messages wait."""
    from channels.webchat_outbox import WebChatAdapter
    from channels.webchat_protocol import new_session_id
    from integrations.redis_url import async_client

    cluster = async_client(redis_cluster_url, decode_responses=True)
    try:
        session = new_session_id()
        result = await WebChatAdapter(cluster, 600).send(session, [Reply("您好，这里是人工客服")], "agent")
        assert result == DeliveryResult("queued")
        assert "您好，这里是人工客服" in "".join(await cluster.lrange(outbox_key(session), 0, -1))
        assert 0 < await cluster.ttl(outbox_key(session)) <= 600
    finally:
        await cluster.aclose()
