"""The delivery facade on real Redis: a contract run against every registered channel adapter
(web chat for real; WeChat and SMS with their third-party APIs faked on loopback), and the
facade's own rules: results, opt-out, quiet hours (pinned clock), rate limits, ordering across
two instances, metrics and the masked log line."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from channels.delivery import Deliverer, decode_content, encode_content
from channels.messages import Button, DeliveryResult, Notice, Reply
from channels.optout import OptOutStore
from channels.quiet_hours import QuietHours
from channels.webchat_outbox import WebChatAdapter, outbox_key
from integrations.rate_limit import Rate
from tests.channels.delivery_support import DAY, MORNING, NIGHT, QUIET, Clock

OUTAGE = Notice("outage_notice", {"area": "江宁区东山街道", "start": "09:00", "end": "17:00",
                                  "reason": "线路检修"})


@dataclass
class Target:
    """One registered channel for the contract: its adapter, a user on it, and what reached
    that user's transport so far (texts in order: message texts, template values, SMS params)."""

    adapter: Any
    user_id: str
    received: Callable[[], Awaitable[list[str]]]

    @property
    def conversation_id(self) -> str:
        return f"{self.adapter.name}:{self.user_id}"


async def web_target(redis: Redis, clock: Clock, stack: contextlib.AsyncExitStack) -> Target:
    session_id = uuid.uuid4().hex

    async def received() -> list[str]:
        events = [json.loads(raw) for raw in await redis.lrange(outbox_key(session_id), 0, -1)]
        return [" ".join([e["text"], *(q["title"] for q in e.get("quick_replies", ()))])
                if "text" in e else json.dumps(e, ensure_ascii=False) for e in events]

    return Target(WebChatAdapter(redis, 3600, clock), session_id, received)


async def wechat_target(redis: Redis, clock: Clock, stack: contextlib.AsyncExitStack) -> Target:
    from channels.wechat.adapter import WeChatAdapter, record_interaction
    from channels.wechat.api import WeChatApi
    from channels.wechat.config import WeChatConfig
    from channels.wechat.templates import WeChatTemplates
    from fakes.wechat_api import FakeWeChatApi

    fake = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    await fake.start()
    stack.push_async_callback(fake.close)
    api = WeChatApi(fake.base_url, fake.app_id, fake.app_secret, redis, retry_delays=())
    stack.push_async_callback(api.close)
    templates = WeChatTemplates.from_dict({"outage_notice": {
        "template_id": "TPL-outage", "data": {"thing1": "${area}", "time2": "${start}",
                                              "time3": "${end}", "thing4": "${reason}"}}})
    openid = "o" + secrets.token_hex(14)
    await record_interaction(redis, openid, at=clock())  # inside the 48-hour window

    async def received() -> list[str]:
        texts = [(m.at, m.content) for m in fake.sent if m.openid == openid and m.msgtype == "text"]
        # Template messages carry their values in fields; one string per message.
        return [c for _, c in texts] + [" ".join(f["value"] for f in t["data"].values())
                                        for t in fake.templates_to(openid)]

    return Target(WeChatAdapter(WeChatConfig(templates=templates), redis, api, clock=clock),
                  openid, received)


async def sms_target(redis: Redis, clock: Clock, stack: contextlib.AsyncExitStack) -> Target:
    from channels.options import OptionMemory
    from channels.sms.adapter import SmsAdapter
    from channels.sms.outbox import Outbox
    from channels.sms.providers.aliyun import AliyunSmsSender
    from channels.sms.ratelimit import RateLimiter
    from channels.sms.templates import SmsRenderer, TemplateBook
    from tests.channels.sms.conftest import SIGN, TEMPLATES, aliyun_templates
    from fakes.aliyun_sms import FakeAliyunSms

    fake = FakeAliyunSms(sign_names=(SIGN,), templates=aliyun_templates())
    await fake.start()
    stack.push_async_callback(fake.close)
    text_redis = Redis(connection_pool=redis.connection_pool.__class__(
        **{**redis.connection_pool.connection_kwargs, "decode_responses": True}))
    stack.push_async_callback(text_redis.aclose)
    sender = AliyunSmsSender(fake.access_key_id, fake.access_key_secret, fake.url, SIGN)
    stack.push_async_callback(sender.close)
    # The facade applies quiet hours and opt-out; the outbox keeps its provider-side rules.
    outbox = Outbox(text_redis, sender, QuietHours(None), RateLimiter(text_redis, {}),
                    OptOutStore(text_redis), clock=clock,
                    queue_key=f"pd:sms:outbox:test:{uuid.uuid4().hex}")
    renderer = SmsRenderer(TemplateBook.from_dict(TEMPLATES), "aliyun", SIGN)
    phone = f"139{secrets.randbelow(10**8):08d}"

    async def received() -> list[str]:
        return ["".join(str(v) for v in s["params"].values()) for s in fake.sent
                if s["phone"] == phone]

    return Target(SmsAdapter(outbox, renderer, OptionMemory(text_redis, 300)), phone, received)


# The channels the contract runs against; a new channel adds its factory here.
TARGETS: dict[str, Callable[..., Awaitable[Target]]] = {
    "web": web_target, "wechat": wechat_target, "sms": sms_target}


@pytest.fixture(params=sorted(TARGETS))
async def target(request, redis, clock):
    async with contextlib.AsyncExitStack() as stack:
        yield await TARGETS[request.param](redis, clock, stack)


def delivered(texts: list[str], needle: str) -> bool:
    return any(needle in text for text in texts)


# -- the contract, for every registered channel ---------------------------------------------------

async def test_contract_every_purpose_reaches_the_channel(target, make_deliverer):
    deliverer = make_deliverer(target.adapter)
    cid = target.conversation_id
    reply = await deliverer.deliver(cid, [Reply("您好，请问有什么可以帮您？"),
                                          Reply("请选择：", (Button("查电费", "/query_bill"),))],
                                    "reply")
    agent = await deliverer.deliver(cid, [Reply("人工客服小李为您服务。")], "agent")
    notice = await deliverer.deliver(cid, OUTAGE, "notice")
    for result in (reply, agent, notice):
        assert result.status in ("sent", "queued"), result
        assert result.when is None and not result.retry
    texts = await target.received()
    assert delivered(texts, "您好，请问有什么可以帮您") and delivered(texts, "查电费")
    assert delivered(texts, "人工客服小李为您服务")
    assert delivered(texts, "江宁区东山街道")


async def test_contract_opt_out_stops_notices_but_not_replies(target, make_deliverer):
    deliverer = make_deliverer(target.adapter)
    cid = target.conversation_id
    await deliverer.optouts.opt_out(cid)
    assert await deliverer.deliver(cid, OUTAGE, "notice") == DeliveryResult("skipped", "opted_out")
    assert await deliverer.deliver(cid, Notice("outage_notice", OUTAGE.params, urgent=True),
                                   "notice") == DeliveryResult("skipped", "opted_out")
    assert await target.received() == []
    result = await deliverer.deliver(cid, [Reply("您的工单已受理。")], "agent")
    assert result.status in ("sent", "queued")
    assert delivered(await target.received(), "您的工单已受理")


async def test_contract_quiet_hours_hold_notices_until_morning_urgent_ones_go(
        target, make_deliverer, clock):
    deliverer = make_deliverer(target.adapter)
    cid = target.conversation_id
    clock.now = NIGHT
    assert await deliverer.deliver(cid, OUTAGE, "notice") == DeliveryResult(
        "queued", "quiet_hours", when=MORNING)
    assert await target.received() == []
    assert await deliverer.run_due() == 0  # not due yet
    urgent = Notice("outage_notice", {**OUTAGE.params, "area": "秣陵街道翠屏社区"}, urgent=True)
    assert (await deliverer.deliver(cid, urgent, "notice")).status in ("sent", "queued")
    assert [t for t in await target.received() if "江宁区东山街道" in t] == []
    assert delivered(await target.received(), "秣陵街道翠屏社区")
    reply = await deliverer.deliver(cid, [Reply("夜间也能回答您的问题。")], "reply")
    assert reply.status in ("sent", "queued") and reply.reason != "quiet_hours"

    clock.now = MORNING
    assert await deliverer.run_due() == 1
    assert delivered(await target.received(), "江宁区东山街道")
    assert await deliverer.run_due() == 0  # delivered once, gone from the schedule


async def test_contract_two_instances_never_interleave_one_conversation(target, make_deliverer):
    first, second = make_deliverer(target.adapter), make_deliverer(target.adapter)
    cid = target.conversation_id

    async def answers(deliverer: Deliverer, who: str) -> None:
        for n in range(3):
            result = await deliverer.deliver(
                cid, [Reply(f"{who}{n}甲"), Reply(f"{who}{n}乙")], "reply")
            assert result.status in ("sent", "queued")

    await asyncio.gather(answers(first, "一号"), answers(second, "二号"))
    # A channel may join an answer's parts into one message (SMS): compare the parts' order.
    parts = re.findall(r"[一二]号\d[甲乙]", "\n".join(await target.received()))
    assert sorted(parts) == sorted(f"{who}{n}{part}" for who in ("一号", "二号")
                                   for n in range(3) for part in "甲乙")
    for index in range(0, 12, 2):  # every answer's two parts are adjacent, in order
        assert parts[index].endswith("甲") and parts[index + 1] == parts[index][:-1] + "乙"


# -- the facade's own rules and results --------------------------------------------------------

def deliveries(**labels: str) -> float:
    return REGISTRY.get_sample_value("powerdesk_gateway_deliveries_total", labels) or 0.0


async def test_unknown_channel_and_invalid_content_are_results_not_errors(make_deliverer, recording):
    deliverer = make_deliverer(recording())
    before = deliveries(channel="unknown", purpose="notice", status="skipped", reason="no_channel")
    assert await deliverer.deliver("fax:0255551234", OUTAGE, "notice") == DeliveryResult(
        "skipped", "no_channel")
    assert await deliverer.deliver("rec", OUTAGE, "notice") == DeliveryResult("skipped", "no_channel")
    assert deliveries(channel="unknown", purpose="notice", status="skipped",
                      reason="no_channel") == before + 2
    for content, purpose in [(OUTAGE, "reply"), ([Reply("x")], "notice"), ("文本", "reply"),
                             ([Reply("x")], "broadcast")]:
        assert await deliverer.deliver("rec:u1", content, purpose) == DeliveryResult(
            "failed", "invalid_content")
    assert deliverer.channels == ("rec",)


async def test_adapter_failures_become_failed_results_with_retry_advice(make_deliverer, recording):
    channel = recording()
    deliverer = make_deliverer(channel, send_timeout=0.2)
    channel.answer = DeliveryResult("failed", "invalid_openid")
    assert await deliverer.deliver("rec:u1", [Reply("你好")], "reply") == DeliveryResult(
        "failed", "invalid_openid")
    channel.answer = ConnectionResetError("boom")
    assert await deliverer.deliver("rec:u1", [Reply("你好")], "reply") == DeliveryResult(
        "failed", "error", retry=True)
    channel.answer, channel.delay = None, 1.0
    assert await deliverer.deliver("rec:u1", [Reply("你好")], "reply") == DeliveryResult(
        "failed", "timeout", retry=True)


async def test_a_conversation_still_busy_after_the_wait_fails_retryably(
        make_deliverer, recording, redis):
    deliverer = make_deliverer(recording(), lock_wait=0.2)
    held = redis.lock("pd:delivery:turn:rec:u1", timeout=5)
    assert await held.acquire()
    try:
        assert await deliverer.deliver("rec:u1", [Reply("你好")], "reply") == DeliveryResult(
            "failed", "conversation_busy", retry=True)
    finally:
        await held.release()
    assert (await deliverer.deliver("rec:u1", [Reply("你好")], "reply")).status == "sent"


async def test_redis_down_is_a_failed_result(recording, clock):
    from tests.support.ports import free_port

    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    deliverer = Deliverer(dead, OptOutStore(dead), QuietHours(QUIET), clock=clock)
    deliverer.register(recording())
    try:
        assert await deliverer.deliver("rec:u1", OUTAGE, "notice") == DeliveryResult(
            "failed", "redis_unavailable", retry=True)
    finally:
        await dead.aclose()


async def test_ordering_lock_serialises_two_instances(make_deliverer, recording):
    channel = recording()
    first, second = make_deliverer(channel), make_deliverer(channel)

    async def answers(deliverer: Deliverer, who: str) -> None:
        for n in range(4):
            await deliverer.deliver("rec:u1", [Reply(f"{who}{n}a"), Reply(f"{who}{n}b"),
                                               Reply(f"{who}{n}c")], "reply")

    await asyncio.gather(answers(first, "x"), answers(second, "y"))
    sent = await channel.sent()
    assert len(sent) == 24
    for index in range(0, 24, 3):
        assert [s[-1] for s in sent[index:index + 3]] == ["a", "b", "c"]
        assert len({s[:-1] for s in sent[index:index + 3]}) == 1
    # Another conversation is not held up by this one's lock.
    assert (await first.deliver("rec:u2", [Reply("独立")], "reply")).status == "sent"


async def test_rate_limits_queue_replies_and_skip_notices(make_deliverer, recording, clock):
    channel = recording()
    deliverer = make_deliverer(channel, rate_limits={
        ("*", "notice"): (Rate(2, 3600),), ("rec", "reply"): (Rate(1, 60),),
        ("other", "agent"): (Rate(1, 60),)})
    for _ in range(2):
        assert (await deliverer.deliver("rec:u1", OUTAGE, "notice")).status == "sent"
    limited = await deliverer.deliver("rec:u1", OUTAGE, "notice")
    assert (limited.status, limited.reason) == ("skipped", "rate_limited")
    assert limited.when == pytest.approx(DAY + 1800, abs=1)  # one token back after 30 minutes
    assert (await deliverer.deliver("rec:u2", OUTAGE, "notice")).status == "sent"  # per conversation

    assert (await deliverer.deliver("rec:u1", [Reply("第一条")], "reply")).status == "sent"
    queued = await deliverer.deliver("rec:u1", [Reply("第二条")], "reply")
    assert (queued.status, queued.reason) == ("queued", "rate_limited")
    assert queued.when == pytest.approx(DAY + 60, abs=1)
    for _ in range(3):  # agent messages have no limit on this channel
        assert (await deliverer.deliver("rec:u1", [Reply("人工")], "agent")).status == "sent"
    clock.now += 61
    assert await deliverer.run_due() == 1
    assert (await channel.sent())[-1] == "第二条"


async def test_a_one_time_code_ignores_opt_out_quiet_hours_and_the_notice_budget(
        make_deliverer, recording, clock):
    channel = recording()
    deliverer = make_deliverer(channel, rate_limits={("*", "notice"): (Rate(1, 3600),)})
    code = Notice("verification_code", {"code": "864213"})   # not marked urgent by its sender
    await deliverer.optouts.opt_out("rec:u1")
    clock.now = NIGHT
    for _ in range(3):
        assert await deliverer.deliver("rec:u1", code, "notice") == DeliveryResult("sent")
    assert await channel.sent() == ["verification_code"] * 3
    # The other notices still obey all three rules.
    assert await deliverer.deliver("rec:u1", OUTAGE, "notice") == DeliveryResult("skipped",
                                                                                "opted_out")
    assert (await deliverer.deliver("rec:u2", OUTAGE, "notice")).reason == "quiet_hours"
    clock.now = DAY
    assert (await deliverer.deliver("rec:u3", OUTAGE, "notice")).status == "sent"
    assert (await deliverer.deliver("rec:u3", OUTAGE, "notice")).reason == "rate_limited"


async def test_a_one_time_code_keeps_its_place_in_the_conversation(make_deliverer, recording):
    channel = recording()
    first, second = make_deliverer(channel), make_deliverer(channel)
    channel.delay = 0.05
    await asyncio.gather(
        first.deliver("rec:u1", [Reply("请查收验证码"), Reply("五分钟内有效")], "reply"),
        second.deliver("rec:u1", Notice("verification_code", {"code": "864213"}), "notice"))
    sent = await channel.sent()
    assert sent in (["请查收验证码", "五分钟内有效", "verification_code"],
                    ["verification_code", "请查收验证码", "五分钟内有效"])


async def test_scheduled_transient_failures_are_retried_then_given_up(make_deliverer, recording,
                                                                      clock):
    channel = recording()
    deliverer = make_deliverer(channel)
    assert (await deliverer.schedule("rec:u1", OUTAGE, "notice", DAY)).status == "queued"
    channel.answer = DeliveryResult("failed", "unavailable", retry=True)
    assert await deliverer.run_due() == 1
    assert await deliverer.run_due() == 0            # backing off
    clock.now += 30
    assert await deliverer.run_due() == 1            # second attempt
    channel.answer = None
    clock.now += 60
    assert await deliverer.run_due() == 1
    assert await channel.sent() == ["outage_notice"]
    assert len(channel.calls) == 3

    await deliverer.schedule("rec:u1", OUTAGE, "notice", clock.now)
    clock.now += 86400 + 1                            # too old: given up, never sent
    assert await deliverer.run_due() == 1
    assert len(channel.calls) == 3


async def test_a_crashed_worker_loses_nothing(make_deliverer, recording, clock, redis):
    channel = recording()
    crashed, survivor = make_deliverer(channel), make_deliverer(channel)
    await crashed.schedule("rec:u1", [Reply("早上好")], "reply", DAY)
    # The crashed instance leased the entry and died before delivering it.
    leased = await crashed._lease(keys=[crashed._schedule_key],
                                  args=[repr(DAY), repr(DAY + 120), 10])
    assert len(leased) == 1
    assert await survivor.run_due() == 0   # leased: not taken twice
    clock.now += 121
    assert await survivor.run_due() == 1   # the lease ran out
    assert await channel.sent() == ["早上好"]


async def test_same_time_deliveries_keep_their_order(make_deliverer, recording, clock):
    channel = recording()
    deliverer = make_deliverer(channel)
    clock.now = NIGHT
    kinds = [f"kind{n}" for n in range(12)]
    for kind in kinds:
        clock.now += 0.001
        await deliverer.deliver("rec:u1", Notice(kind), "notice")
    clock.now = MORNING
    assert await deliverer.run_due() == 12
    assert await channel.sent() == kinds


async def test_one_masked_log_line_and_a_metric_per_delivery(make_deliverer, recording, caplog):
    deliverer = make_deliverer(recording("sms"))
    before = deliveries(channel="sms", purpose="notice", status="sent", reason="")
    with caplog.at_level(logging.INFO, logger="channels.delivery"):
        await deliverer.deliver("sms:13812345678", Notice("verification_code", {"code": "864213"}),
                                "notice")
    lines = [r.getMessage() for r in caplog.records if r.name == "channels.delivery"]
    assert lines == ["delivery notice verification_code to sms:*******5678: sent"]
    assert deliveries(channel="sms", purpose="notice", status="sent", reason="") == before + 1


async def test_free_text_reasons_are_counted_as_other(make_deliverer, recording):
    channel = recording()
    deliverer = make_deliverer(channel)
    channel.answer = DeliveryResult("failed", "transient failure isp.RAM_PERMISSION_DENY (attempt 3)")
    before = deliveries(channel="rec", purpose="reply", status="failed", reason="other")
    result = await deliverer.deliver("rec:u1", [Reply("你好")], "reply")
    assert result.reason.startswith("transient failure")  # the caller still gets it whole
    assert deliveries(channel="rec", purpose="reply", status="failed", reason="other") == before + 1


def test_content_survives_the_schedule_encoding():
    replies = [Reply("请选择", (Button("是", "/affirm"),), "https://e.com/a.png", {"k": 1})]
    assert decode_content(json.loads(json.dumps(encode_content(replies)))) == replies
    urgent = Notice("outage_notice", {"area": "江宁区"}, urgent=True)
    assert decode_content(json.loads(json.dumps(encode_content(urgent)))) == urgent
    keyed = Notice("bill_due", {"amount": "12.30"}, key="bc:due_reminder:2026-11-28:3:3301")
    assert decode_content(json.loads(json.dumps(encode_content(keyed)))) == keyed


def test_delivery_settings_are_read_and_validated():
    from channels.config import ConfigError, GatewayConfig

    defaults = GatewayConfig.from_env({})
    assert defaults.delivery_quiet_hours == QUIET and defaults.timezone == "Asia/Shanghai"
    assert dict(defaults.delivery_rate_limits) == {("*", "notice"): (Rate(5, 3600), Rate(10, 86400))}
    assert defaults.webchat_outbox_ttl_seconds == 7 * 86400
    assert defaults == GatewayConfig(redis_url=None)  # the dataclass defaults say the same
    custom = GatewayConfig.from_env({
        "DELIVERY_QUIET_HOURS": "off", "POWERDESK_TIMEZONE": "Asia/Urumqi",
        "DELIVERY_RATE_LIMITS": "notice=1/min; sms.reply=20/h; web.notice=off",
        "WEBCHAT_OUTBOX_TTL_SECONDS": "3600"})
    assert custom.delivery_quiet_hours is None and custom.timezone == "Asia/Urumqi"
    assert dict(custom.delivery_rate_limits) == {
        ("*", "notice"): (Rate(1, 60),), ("sms", "reply"): (Rate(20, 3600),), ("web", "notice"): ()}
    assert custom.webchat_outbox_ttl_seconds == 3600
    for name, bad in [("DELIVERY_QUIET_HOURS", "22-8"), ("DELIVERY_QUIET_HOURS", "25:00-08:00"),
                      ("DELIVERY_RATE_LIMITS", "notices=1/h"), ("DELIVERY_RATE_LIMITS", "notice=lots"),
                      ("DELIVERY_RATE_LIMITS", "notice"), ("POWERDESK_TIMEZONE", "Mars/Olympus"),
                      ("WEBCHAT_OUTBOX_TTL_SECONDS", "5")]:
        with pytest.raises(ConfigError, match=name):
            GatewayConfig.from_env({name: bad})
