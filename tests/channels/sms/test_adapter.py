"""SmsAdapter on real Redis and the loopback Aliyun fake: replies with remembered options,
notices through their approved template or the fallback template, one-time codes as system
messages, and the outbox's outcome as the DeliveryResult."""
from __future__ import annotations

import uuid
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from channels.messages import Button, Notice, Reply
from channels.options import OptionMemory
from channels.optout import OptOutStore
from channels.quiet_hours import QuietHours
from channels.sms.adapter import SmsAdapter
from channels.sms.config import RateLimit
from channels.sms.outbox import Outbox
from channels.sms.providers.aliyun import AliyunSmsSender
from channels.sms.ratelimit import RateLimiter
from channels.sms.templates import SmsRenderer, TemplateBook
from tests.channels.sms.conftest import SIGN, TEMPLATES, Clock, aliyun_templates
from fakes.aliyun_sms import FakeAliyunSms

SH = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 23, 12, 0, 30, tzinfo=SH).timestamp()
NIGHT = datetime(2026, 11, 23, 22, 30, tzinfo=SH).timestamp()
MORNING = datetime(2026, 11, 24, 8, 0, tzinfo=SH).timestamp()
CODE = {"verification_code": {"text": "您的验证码为${code}，5分钟内有效。", "params": ["code"],
                              "aliyun": "SMS_900000009", "tencent": "900009"}}
OUTAGE = {"area": "玄武区钟灵街社区", "start": "9:00", "end": "17:00", "reason": "线路检修"}


@pytest.fixture
async def fake():
    fake = FakeAliyunSms(sign_names=(SIGN,), templates={**aliyun_templates(), "SMS_900000009": ("code",)})
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def make_adapter(redis, fake):
    senders = []

    def make(clock=None, templates=None, reply_limit: int = 20) -> SmsAdapter:
        clock = clock or Clock(NOON)
        sender = AliyunSmsSender(fake.access_key_id, fake.access_key_secret, fake.url, SIGN)
        senders.append(sender)
        outbox = Outbox(redis, sender, QuietHours((time(21), time(8)), "Asia/Shanghai"),
                        RateLimiter(redis, {"proactive": (RateLimit(5, 3600),),
                                            "reply": (RateLimit(reply_limit, 3600),)}),
                        OptOutStore(redis), clock=clock,
                        queue_key=f"pd:sms:outbox:test:{uuid.uuid4().hex}")
        book = TemplateBook.from_dict(templates if templates is not None else {**TEMPLATES, **CODE})
        return SmsAdapter(outbox, SmsRenderer(book, "aliyun", SIGN), OptionMemory(redis, 300))

    yield make
    for sender in senders:
        await sender.close()


def sent_to(fake, phone: str) -> list[tuple[str, dict]]:
    return [(s["template"], s["params"]) for s in fake.sent if s["phone"] == phone]


async def test_replies_are_templated_and_their_options_remembered(make_adapter, fake, phone):
    adapter = make_adapter()
    replies = [Reply("请选择：", (Button("查电费", "/query_bill"),)),
               Reply("也可以：", (Button("转人工", "/request_human"),))]
    result = await adapter.send(phone, replies, "agent")
    assert (result.status, result.reason) == ("sent", "")
    text = "".join("".join(p.values()) for _, p in sent_to(fake, phone))
    assert "回复1 查电费" in text and "回复2 转人工" in text
    offered = await adapter.options.offered(f"sms:{phone}")
    assert [o.payload for o in offered] == ["/query_bill", "/request_human"]


async def test_a_reply_over_the_budget_is_queued_with_its_time(make_adapter, fake, phone):
    adapter = make_adapter(reply_limit=1)
    assert (await adapter.send(phone, [Reply("第一条")], "reply")).status == "sent"
    result = await adapter.send(phone, [Reply("第二条")], "reply")
    assert result.status == "queued" and result.when and result.when > NOON
    await adapter.outbox.redis.delete(adapter.outbox.queue_key)


async def test_a_notice_goes_through_its_approved_template(make_adapter, fake, phone):
    result = await make_adapter().send(phone, Notice("outage_notice", OUTAGE), "notice")
    assert result.status == "sent"
    assert sent_to(fake, phone) == [("SMS_900000006", OUTAGE)]


@pytest.mark.parametrize("notice", [
    Notice("meter_reading", {"reading": "1234"}),          # kind not approved here
    Notice("outage_notice", {**OUTAGE, "reason": ""}),     # a parameter missing
])
async def test_a_notice_without_a_usable_template_goes_as_the_fallback_template(make_adapter, fake,
                                                                               phone, notice):
    result = await make_adapter().send(phone, notice, "notice")
    assert result.status == "sent"
    assert [t for t, _ in sent_to(fake, phone)] == ["SMS_900000002"]


async def test_without_a_fallback_template_a_notice_fails(make_adapter, fake, phone):
    templates = {k: v for k, v in TEMPLATES.items() if k != "fallback"}
    result = await make_adapter(templates=templates).send(phone, Notice("meter_reading"), "notice")
    assert (result.status, result.reason) == ("failed", "no_template")
    assert sent_to(fake, phone) == []


async def test_notices_wait_for_the_morning_unless_urgent(make_adapter, fake, phone):
    adapter = make_adapter(Clock(NIGHT))
    held = await adapter.send(phone, Notice("outage_notice", OUTAGE), "notice")
    assert (held.status, held.when) == ("queued", MORNING)
    urgent = await adapter.send(phone, Notice("outage_notice", OUTAGE, urgent=True), "notice")
    assert urgent.status == "sent" and len(sent_to(fake, phone)) == 1
    await adapter.outbox.redis.delete(adapter.outbox.queue_key)


async def test_a_notice_to_an_opted_out_number_is_skipped(make_adapter, fake, redis, phone):
    await OptOutStore(redis).opt_out(f"sms:{phone}")
    result = await make_adapter().send(phone, Notice("outage_notice", OUTAGE), "notice")
    assert (result.status, result.reason) == ("skipped", "opted_out")
    assert sent_to(fake, phone) == []


async def test_a_verification_code_is_a_system_message_never_the_fallback(make_adapter, fake, redis, phone):
    await OptOutStore(redis).opt_out(f"sms:{phone}")  # a code the customer asked for still goes
    adapter = make_adapter(Clock(NIGHT))      # and quiet hours do not hold it
    result = await adapter.send(phone, Notice("verification_code", {"code": "482913"}), "notice")
    assert result.status == "sent"
    assert sent_to(fake, phone) == [("SMS_900000009", {"code": "482913"})]
    without = make_adapter(templates=TEMPLATES)
    result = await without.send(phone, Notice("verification_code", {"code": "482913"}), "notice")
    assert (result.status, result.reason) == ("failed", "no_template")
    assert len(sent_to(fake, phone)) == 1
