"""Keyed SMS notices (broadcast idempotency keys), counted at the loopback provider fakes: a key
is sent at most once per number, a lost attempt is reconciled through the provider's query API
before any resend, provider flow control of a keyed notice goes back to the sender, and status
reports of keyed notices reach ``pd:notice:reports``."""
from __future__ import annotations

import secrets
from dataclasses import replace

import aiohttp
import pytest
import yaml

from channels.delivery import DELIVERER_KEY
from channels.messages import Notice
from channels.notice_reports import REPORTS_STREAM
from channels.options import OptionMemory
from channels.sms.adapter import SmsAdapter
from channels.sms.outbox import PROACTIVE, DeliveryReport, keyed_id
from channels.sms.config import DEFAULT_TEMPLATES_FILE
from channels.sms.templates import SmsRenderer, TemplateBook
from fakes.aliyun_sms import FakeAliyunSms, report_items
from fakes.tencent_sms import FakeTencentSms
from tests.channels.sms.conftest import SIGN, TEMPLATES, Clock, aliyun_templates, tencent_templates
from tests.channels.sms.test_outbox import NOON, make_outbox, outage, sent_to, stop_mid_send

OUTAGE = {"area": "玄武区钟灵街社区", "start": "9:00", "end": "17:00", "reason": "线路检修"}


def new_key() -> str:
    return f"bc:outage:T{secrets.token_hex(4)}:notice:{secrets.randbelow(10**10):010d}"


async def reports(redis, key: str) -> list[dict[str, str]]:
    return [fields for _, fields in await redis.xrange(REPORTS_STREAM) if fields["key"] == key]


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
async def aliyun(clock):
    fake = FakeAliyunSms(sign_names=(SIGN,), templates=aliyun_templates(), clock=clock)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def tencent(clock):
    fake = FakeTencentSms(sign_names=(SIGN,), templates=tencent_templates(), clock=clock)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def outboxes(redis):
    made = []

    def make(fake, clock, provider="aliyun", **kwargs):
        outbox = make_outbox(redis, fake, clock, provider=provider, **kwargs)
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        await outbox.sender.close()


def adapter(redis, outbox, provider="aliyun") -> SmsAdapter:
    return SmsAdapter(outbox, SmsRenderer(TemplateBook.from_dict(TEMPLATES), provider, SIGN),
                      OptionMemory(redis, 600))


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_a_second_deliver_of_the_same_key_sends_nothing(redis, outboxes, clock, aliyun,
                                                              tencent, phone, provider):
    fake = aliyun if provider == "aliyun" else tencent
    sms = adapter(redis, outboxes(fake, clock, provider), provider)
    key = new_key()
    notice = Notice("outage_notice", OUTAGE, key=key)
    first = await sms.send(phone, notice, "notice")
    clock.advance(3600)  # past the per-number budget's window: only the key can stop it
    second = await sms.send(phone, notice, "notice")
    assert first.status == second.status == "sent"
    assert len(sent_to(fake, phone)) == 1
    # The reference (Aliyun OutId, Tencent SessionContext) is the message id, a digest: the key
    # names the customer's account and never reaches the provider.
    reference = aliyun.sent[-1]["out_id"] if provider == "aliyun" else tencent.sent[-1]["session_context"]
    assert reference == keyed_id(key, phone) and key not in reference
    # Another campaign's key is another notice.
    assert (await sms.send(phone, Notice("outage_notice", OUTAGE, key=new_key()), "notice")).status \
        == "sent"
    assert len(sent_to(fake, phone)) == 2


async def test_the_message_id_is_derived_from_key_and_number(redis, outboxes, clock, aliyun, phone):
    outbox = outboxes(aliyun, clock)
    key = new_key()
    msg_id = await outbox.submit(phone, outage(), PROACTIVE, key=key)
    assert msg_id == keyed_id(key, phone) != keyed_id(key, "13900000000")
    assert await outbox.submit(phone, outage(), PROACTIVE, key=key) == msg_id
    assert (await outbox.get(msg_id))["key"] == key


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_a_lost_attempt_the_provider_accepted_is_found_and_not_resent(
        redis, outboxes, clock, aliyun, tencent, phone, provider):
    fake = aliyun if provider == "aliyun" else tencent
    first = outboxes(fake, clock, provider)
    key = new_key()
    # The worker is killed after the provider accepted, before the answer was recorded.
    hold = fake.hold_next(accept_if_abandoned=True)
    await stop_mid_send(first.submit(phone, outage(provider), PROACTIVE, key=key), hold)
    assert len(sent_to(fake, phone)) == 1
    msg_id = keyed_id(key, phone)
    assert (await first.get(msg_id))["sending_since"]
    # The campaign resumes in another process: while the lease runs, the message is left alone.
    second = outboxes(fake, clock, provider, queue_key=first.queue_key)
    sms = adapter(redis, second, provider)
    in_flight = await sms.send(phone, Notice("outage_notice", OUTAGE, key=key), "notice")
    assert (in_flight.status, in_flight.reason) == ("queued", "in_flight")
    assert len(sent_to(fake, phone)) == 1 and (await second.get(msg_id))["state"] == "queued"
    clock.advance(second.lease_seconds + 1)
    await second.submit(phone, outage(provider), PROACTIVE, key=key)
    msg = await second.get(msg_id)
    assert len(sent_to(fake, phone)) == 1  # not resent
    if provider == "aliyun":
        assert aliyun.queries and aliyun.queries[-1]["PhoneNumber"] == phone
        assert msg["state"] == "sent" and msg["last_code"] == "reconciled"  # waiting for report
        # The report push that follows names the message by its OutId (no BizId was learnt).
        report = report_items(sent_to(aliyun, phone))[0]
        assert await second.record_report(DeliveryReport(
            report["biz_id"], phone, True, "DELIVERED", report["report_time"],
            report["out_id"])) == "applied"
    else:
        assert tencent.pulls and tencent.pulls[-1]["PhoneNumber"] == f"+86{phone}"
        assert msg["provider_id"] == tencent.sent[-1]["serial"]
    msg = await second.get(msg_id)
    assert msg["state"] == "delivered" and "sending_since" not in msg
    assert [(r["channel"], r["status"]) for r in await reports(redis, key)] == [("sms", "delivered")]
    assert await redis.zscore(second.queue_key, msg_id) is None


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_a_lost_attempt_the_provider_never_got_is_resent_once(
        redis, outboxes, clock, aliyun, tencent, phone, provider):
    fake = aliyun if provider == "aliyun" else tencent
    first = outboxes(fake, clock, provider)
    key = new_key()
    hold = fake.hold_next()  # the provider drops the call: the client went away
    await stop_mid_send(first.submit(phone, outage(provider), PROACTIVE, key=key), hold)
    assert sent_to(fake, phone) == [] and len(fake.abandoned) == 1
    second = outboxes(fake, clock, provider, queue_key=first.queue_key)
    clock.advance(second.lease_seconds + 1)
    msg_id = keyed_id(key, phone)
    if provider == "tencent":
        # Tencent lists a message only once reported: "not found" waits for the grace period.
        await second.submit(phone, outage(provider), PROACTIVE, key=key)
        msg = await second.get(msg_id)
        assert sent_to(fake, phone) == [] and msg["state"] == "queued"
        assert msg["sending_since"] and "status report" in msg["waiting_for"]
        clock.advance(second.reconcile_grace_seconds)
        assert await second.run_due() == 1
    else:
        await second.submit(phone, outage(provider), PROACTIVE, key=key)
    assert len(sent_to(fake, phone)) == 1
    assert (await second.get(msg_id))["state"] == "sent"
    clock.advance(3600)
    await second.submit(phone, outage(provider), PROACTIVE, key=key)
    assert len(sent_to(fake, phone)) == 1


async def test_a_failed_provider_query_resends_nothing_and_asks_again(
        redis, outboxes, clock, aliyun, phone):
    first = outboxes(aliyun, clock)
    key = new_key()
    hold = aliyun.hold_next(accept_if_abandoned=True)
    await stop_mid_send(first.submit(phone, outage(), PROACTIVE, key=key), hold)
    clock.advance(first.lease_seconds + 1)
    aliyun.fail_queries_next("isp.SYSTEM_ERROR")
    msg_id = await first.submit(phone, outage(), PROACTIVE, key=key)
    msg = await first.get(msg_id)
    assert msg["state"] == "queued" and msg["sending_since"] and "query failed" in msg["waiting_for"]
    assert len(sent_to(aliyun, phone)) == 1
    clock.advance(61)
    assert await first.run_due() == 1
    assert (await first.get(msg_id))["state"] == "sent" and len(sent_to(aliyun, phone)) == 1


@pytest.mark.parametrize("provider,code", [
    ("aliyun", "isv.BUSINESS_LIMIT_CONTROL"),
    ("tencent", "LimitExceeded.AppGlobalDailyLimit"),
    ("tencent", "LimitExceeded.PhoneNumberThirtySecondLimit"),
])
async def test_provider_flow_control_of_a_keyed_notice_goes_back_to_the_sender(
        redis, outboxes, clock, aliyun, tencent, phone, provider, code):
    fake = aliyun if provider == "aliyun" else tencent
    outbox = outboxes(fake, clock, provider)
    sms = adapter(redis, outbox, provider)
    if provider == "aliyun":
        fake.fail_next(code)
    elif code.startswith("LimitExceeded.Phone"):
        fake.number_code_next(code)
    else:
        fake.fail_next(code)  # the whole request refused
    key = new_key()
    notice = Notice("outage_notice", OUTAGE, key=key)
    result = await sms.send(phone, notice, "notice")
    assert result.status == "failed" and result.reason == "throttled" and result.retry
    assert result.when is not None and result.when > clock.now
    msg_id = keyed_id(key, phone)
    assert (await outbox.get(msg_id))["state"] == "throttled"
    assert await redis.zscore(outbox.queue_key, msg_id) is None  # the outbox does not retry it
    clock.advance(120)
    assert await outbox.run_due() == 0 and sent_to(fake, phone) == []
    # The engine backs off, then delivers the key again: sent once.
    assert (await sms.send(phone, notice, "notice")).status == "sent"
    assert (await sms.send(phone, notice, "notice")).status == "sent"
    assert len(sent_to(fake, phone)) == 1


async def test_flow_control_of_an_unkeyed_notice_still_waits_in_the_outbox(
        redis, outboxes, clock, aliyun, phone):
    outbox = outboxes(aliyun, clock)
    aliyun.throttle_next()
    result = await adapter(redis, outbox).send(phone, Notice("outage_notice", OUTAGE), "notice")
    assert result.status == "queued" and "flow control" in result.reason


async def test_an_urgent_notice_uses_its_urgent_template_when_approved(redis, outboxes, clock,
                                                                      aliyun, phone):
    templates = {**TEMPLATES, "outage_notice_urgent": {
        "text": "【紧急】${area}${start}至${end}停电，原因：${reason}。",
        "params": ["area", "start", "end", "reason"], "aliyun": "SMS_900000099"}}
    aliyun.templates["SMS_900000099"] = ("area", "start", "end", "reason")
    sms = SmsAdapter(outboxes(aliyun, clock),
                     SmsRenderer(TemplateBook.from_dict(templates), "aliyun", SIGN),
                     OptionMemory(redis, 600))
    await sms.send(phone, Notice("outage_notice", OUTAGE, urgent=True, key=new_key()), "notice")
    clock.advance(61)  # the number's notice budget: one a minute
    await sms.send(phone, Notice("outage_notice", OUTAGE, key=new_key()), "notice")
    assert [s["template"] for s in sent_to(aliyun, phone)] == ["SMS_900000099", "SMS_900000006"]


async def test_status_reports_of_keyed_notices_reach_the_reports_stream(redis, outboxes, clock,
                                                                        tencent, phone):
    outbox = outboxes(tencent, clock, "tencent")
    key = new_key()
    msg_id = await outbox.submit(phone, outage("tencent"), PROACTIVE, key=key)
    serial = (await outbox.get(msg_id))["provider_id"]
    assert await outbox.record_report(DeliveryReport(serial, phone, False, "UNDELIV",
                                                     "2026-11-23 12:01:00")) == "applied"
    assert await reports(redis, key) == [{"key": key, "channel": "sms", "status": "undelivered",
                                          "code": "UNDELIV"}]
    # An unkeyed message's report is not a notice report.
    other = await outbox.submit(phone, outage("tencent"), "reply")
    other_serial = (await outbox.get(other))["provider_id"]
    before = len(await redis.xrange(REPORTS_STREAM))
    await outbox.record_report(DeliveryReport(other_serial, phone, True, "DELIVRD",
                                              "2026-11-23 12:02:00"))
    assert len(await redis.xrange(REPORTS_STREAM)) == before


async def test_keyed_notices_through_the_gateway_and_their_report_pushes(make_gateway, redis, phone):
    gw = await make_gateway("aliyun", DELIVERY_QUIET_HOURS="off")
    deliver = gw.apps[0][DELIVERER_KEY].deliver
    key = new_key()
    notice = Notice("outage_notice", OUTAGE, key=key)
    assert (await deliver(f"sms:{phone}", notice, "notice")).status == "sent"
    await deliver(f"sms:{phone}", notice, "notice")
    assert len(gw.texts(phone)) == 1
    (sent,) = sent_to(gw.fake, phone)
    assert sent["out_id"] == keyed_id(key, phone)
    assert await gw.post("/sms/aliyun/report", report_items([sent], success=False,
                                                            err_code="MK:0001")) \
        == (200, {"code": 0, "msg": "成功"})
    assert [(r["status"], r["code"]) for r in await reports(redis, key)] == \
        [("undelivered", "MK:0001")]


def shipped_book(provider: str) -> TemplateBook:
    entries = yaml.safe_load(DEFAULT_TEMPLATES_FILE.read_text(encoding="utf-8"))["templates"]
    return TemplateBook.from_dict({kind: {**entry, provider: f"ID_{kind}"}
                                   for kind, entry in entries.items()})


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_every_broadcast_kind_renders_in_its_shipped_template(redis, outboxes, clock, phone,
                                                                    provider):
    from tests.channels.wechat.test_notice_keys import H1_PARAMS

    book = shipped_book(provider)
    if provider == "aliyun":
        fake = FakeAliyunSms(sign_names=(SIGN,), clock=clock,
                             templates={f"ID_{k}": t.params for k, t in book.templates.items()})
    else:
        fake = FakeTencentSms(sign_names=(SIGN,), clock=clock,
                              templates={f"ID_{k}": len(t.params) for k, t in book.templates.items()})
    await fake.start()
    try:
        sms = SmsAdapter(outboxes(fake, clock, provider, limits={}),
                         SmsRenderer(book, provider, SIGN), OptionMemory(redis, 600))
        fault = {**H1_PARAMS["outage_notice"], "outage_kind": "fault"}
        notices = [Notice(kind, params, key=new_key()) for kind, params in H1_PARAMS.items()]
        notices.append(Notice("outage_notice", fault, urgent=True, key=new_key()))
        for notice in notices:
            assert (await sms.send(phone, notice, "notice")).status == "sent", notice.kind
        assert [s["template"] for s in sent_to(fake, phone)] == \
            [f"ID_{n.kind}" for n in notices[:-1]] + ["ID_outage_notice_urgent"]
        texts = [(await sms.outbox.get(keyed_id(n.key, phone)))["text"] for n in notices]
        assert all("${" not in text for text in texts)
        assert texts[-1].startswith("【紧急】") and not texts[4].startswith("【紧急】")
        assert "百家湖社区双龙大道沿线（双龙大道100号至500号）" in texts[4]  # within 35 characters
        # A kind not approved at this provider goes as the fallback template.
        book.templates["arrears"] = replace(book.templates["arrears"], ids={})
        arrears = Notice("arrears", H1_PARAMS["arrears"], key=new_key())
        assert (await sms.send(phone, arrears, "notice")).status == "sent"
        assert sent_to(fake, phone)[-1]["template"] == "ID_fallback"
    finally:
        await fake.close()


def test_the_reconcile_grace_is_configurable():
    from channels.sms.config import SmsConfig, SmsConfigError

    assert SmsConfig.from_env({}).reconcile_grace_seconds == 300.0
    assert SmsConfig.from_env({"SMS_RECONCILE_GRACE_SECONDS": "30"}).reconcile_grace_seconds == 30.0
    with pytest.raises(SmsConfigError, match="SMS_RECONCILE_GRACE_SECONDS"):
        SmsConfig.from_env({"SMS_RECONCILE_GRACE_SECONDS": "soon"})


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_the_fakes_inject_flow_control_over_http(redis, outboxes, clock, aliyun, tencent,
                                                       phone, provider):
    fake = aliyun if provider == "aliyun" else tencent
    body = {"code": "isv.BUSINESS_LIMIT_CONTROL", "times": 1} if provider == "aliyun" \
        else {"code": "LimitExceeded.PhoneNumberOneHourLimit", "times": 1, "per_number": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.url}/_fake/fail", json=body) as response:
            assert response.status == 200
    sms = adapter(redis, outboxes(fake, clock, provider), provider)
    result = await sms.send(phone, Notice("outage_notice", OUTAGE, key=new_key()), "notice")
    assert (result.status, result.reason) == ("failed", "throttled")
    assert sent_to(fake, phone) == []


async def test_a_report_pushed_before_reconciliation_is_applied_when_it_finds_the_message(
        redis, outboxes, clock, aliyun, phone):
    outbox = outboxes(aliyun, clock)
    key = new_key()
    hold = aliyun.hold_next(accept_if_abandoned=True)
    await stop_mid_send(outbox.submit(phone, outage(), PROACTIVE, key=key), hold)
    (sent,) = sent_to(aliyun, phone)
    report = report_items([sent])[0]
    # The provider's report arrives while the message's outcome is still unknown here: parked.
    assert await outbox.record_report(DeliveryReport(
        report["biz_id"], phone, True, "DELIVERED", report["report_time"], report["out_id"])) \
        == "parked"
    clock.advance(outbox.lease_seconds + 1)
    assert await outbox.run_due() == 1  # reconciled: found (no BizId learnt), report applied
    msg = await outbox.get(keyed_id(key, phone))
    assert msg["state"] == "delivered" and len(sent_to(aliyun, phone)) == 1
    assert [r["status"] for r in await reports(redis, key)] == ["delivered"]


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_the_fakes_push_status_reports_to_the_gateway(make_gateway, redis, phone, provider):
    gw = await make_gateway(provider, DELIVERY_QUIET_HOURS="off")
    gw.fake.report_url = f"{gw.urls[0]}/sms/{provider}/report?token={gw.token}"
    deliver = gw.apps[0][DELIVERER_KEY].deliver
    delivered, failed = new_key(), new_key()
    assert (await deliver(f"sms:{phone}", Notice("outage_notice", OUTAGE, key=delivered),
                          "notice")).status == "sent"
    assert await gw.fake.push_reports() == [200]
    other = f"139{secrets.randbelow(10**8):08d}"
    assert (await deliver(f"sms:{other}", Notice("outage_notice", OUTAGE, key=failed),
                          "notice")).status == "sent"
    assert await gw.fake.push_reports(ok=False, code="MK:0005") == [200]
    assert [r["status"] for r in await reports(redis, delivered)] == ["delivered"]
    assert [(r["status"], r["code"]) for r in await reports(redis, failed)] == \
        [("undelivered", "MK:0005")]


async def test_the_aliyun_query_pages_through_a_busy_number(redis, outboxes, clock, aliyun, phone):
    outbox = outboxes(aliyun, clock)
    for n in range(75):  # earlier messages that day: the lost one is on the second page
        aliyun.sent.append({"phone": phone, "template": "SMS_900000006", "params": {},
                            "biz_id": f"{n}^0", "out_id": f"other-{n}", "sent_at": clock.now,
                            "status": 3, "err_code": "DELIVERED", "receive_date": ""})
    key = new_key()
    hold = aliyun.hold_next(accept_if_abandoned=True)
    await stop_mid_send(outbox.submit(phone, outage(), PROACTIVE, key=key), hold)
    clock.advance(outbox.lease_seconds + 1)
    await outbox.submit(phone, outage(), PROACTIVE, key=key)
    assert [q["CurrentPage"] for q in aliyun.queries] == ["1", "2"]
    assert (await outbox.get(keyed_id(key, phone)))["state"] == "sent"
    assert len(sent_to(aliyun, phone)) == 76


async def test_tencent_without_any_report_is_resent_after_the_grace(redis, outboxes, clock, phone):
    # The documented limit: Tencent lists only reported messages. One accepted but never
    # reported within the grace period is sent again (the customer may get it twice).
    fake = FakeTencentSms(sign_names=(SIGN,), templates=tencent_templates(), clock=clock,
                          report_delay_seconds=None)
    await fake.start()
    try:
        outbox = outboxes(fake, clock, "tencent")
        key = new_key()
        hold = fake.hold_next(accept_if_abandoned=True)
        await stop_mid_send(outbox.submit(phone, outage("tencent"), PROACTIVE, key=key), hold)
        clock.advance(outbox.lease_seconds + 1)
        await outbox.submit(phone, outage("tencent"), PROACTIVE, key=key)
        assert len(sent_to(fake, phone)) == 1  # waiting for a report first
        clock.advance(outbox.reconcile_grace_seconds)
        assert await outbox.run_due() == 1
        assert len(sent_to(fake, phone)) == 2 and fake.pulls
    finally:
        await fake.close()


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_a_batch_of_keyed_notices_goes_in_one_call_and_once(redis, outboxes, clock, aliyun,
                                                                  tencent, provider):
    # send_notices (a broadcast's batch): one provider call for the numbers (Aliyun
    # SendBatchSms, Tencent SendSms with several numbers: the params are the same), one
    # reference for the call; submitting the keys again sends nothing.
    fake = aliyun if provider == "aliyun" else tencent
    sms = adapter(redis, outboxes(fake, clock, provider), provider)
    phones = [f"139{secrets.randbelow(10**8):08d}" for _ in range(5)]
    key = new_key()
    items = [(phone, Notice("outage_notice", OUTAGE, key=f"{key}{n}")) for n, phone in enumerate(phones)]
    before = len(fake.sent)
    results = await sms.send_notices(items)
    assert [r.status for r in results] == ["sent"] * 5
    batch = fake.sent[before:]
    assert sorted(s["phone"][-11:] for s in batch) == sorted(phones)
    reference = {s["out_id"] if provider == "aliyun" else s["session_context"] for s in batch}
    assert len(reference) == 1 and reference != {""}
    if provider == "aliyun":
        assert {s["action"] for s in batch} == {"SendBatchSms"}
    clock.advance(3600)
    again = await sms.send_notices(items)
    assert [r.status for r in again] == ["sent"] * 5 and len(fake.sent) == before + 5


async def test_a_lost_keyed_batch_is_found_by_its_reference_and_reported(redis, outboxes, clock,
                                                                         aliyun):
    # A worker killed mid-batch: the next submit of each key asks QuerySendDetails by the
    # batch's OutId, finds it, sends nothing; the report that follows finds the message by it.
    first = outboxes(aliyun, clock)
    phones = [f"139{secrets.randbelow(10**8):08d}" for _ in range(3)]
    key = new_key()
    hold = aliyun.hold_next(accept_if_abandoned=True)
    await stop_mid_send(first.submit_keyed_many(
        [(phone, outage(), f"{key}{n}", False) for n, phone in enumerate(phones)]), hold)
    assert len(aliyun.sent) >= 3 and {s["out_id"] for s in aliyun.sent[-3:]} != {""}
    second = outboxes(aliyun, clock, queue_key=first.queue_key)
    clock.advance(second.lease_seconds + 1)
    states = await second.submit_keyed_many(
        [(phone, outage(), f"{key}{n}", False) for n, phone in enumerate(phones)])
    assert states == ["sent"] * 3
    assert all(len(sent_to(aliyun, phone)) == 1 for phone in phones)
    report = report_items(sent_to(aliyun, phones[0]))[0]
    assert await second.record_report(DeliveryReport(
        report["biz_id"], phones[0], True, "DELIVERED", report["report_time"],
        report["out_id"])) == "applied"
    assert (await second.get(keyed_id(f"{key}0", phones[0])))["state"] == "delivered"
