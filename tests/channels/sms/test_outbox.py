"""Outbox rules on real Redis and a loopback provider: opt-out, quiet hours, rate limits shared
by two instances, retries by error code, delivery reports in any order."""
from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import datetime, time
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from channels.optout import OptOutStore
from channels.sms.config import RateLimit
from channels.sms.outbox import PROACTIVE, REPLY, SYSTEM, DeliveryReport, Outbox
from channels.sms.providers.aliyun import AliyunSmsSender
from channels.sms.providers.tencent import TencentSmsSender
from channels.sms.quiet_hours import QuietHours
from channels.sms.ratelimit import RateLimiter
from channels.sms.templates import SmsRenderer, TemplateBook
from tests.channels.sms.conftest import SIGN, TEMPLATES, Clock
from fakes.aliyun_sms import report_items

SH = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 23, 12, 0, 30, tzinfo=SH).timestamp()
NIGHT = datetime(2026, 11, 23, 22, 30, tzinfo=SH).timestamp()
LIMITS = {"proactive": (RateLimit(1, 60), RateLimit(5, 3600), RateLimit(10, 86400)),
          "reply": (RateLimit(20, 3600),)}


def renderer(provider="aliyun") -> SmsRenderer:
    return SmsRenderer(TemplateBook.from_dict(TEMPLATES), provider, SIGN)


def make_outbox(redis, fake, clock, limits=LIMITS, provider="aliyun",
                queue_key: str | None = None) -> Outbox:
    queue_key = queue_key or f"pd:{{sms}}:outbox:test:{uuid.uuid4().hex}"
    if provider == "aliyun":
        sender = AliyunSmsSender(fake.access_key_id, fake.access_key_secret, fake.url, SIGN)
    else:
        sender = TencentSmsSender(fake.secret_id, fake.secret_key, fake.sdk_app_id, fake.url, SIGN)
    # Each test its own queue: a worker pass with a test's clock must not take other tests' messages.
    return Outbox(redis, sender, QuietHours((time(21), time(8)), "Asia/Shanghai"),
                  RateLimiter(redis, limits), OptOutStore(redis), max_attempts=3, clock=clock,
                  queue_key=queue_key)


def outage(provider="aliyun"):
    return renderer(provider).of_kind("outage_notice", {"area": "玄武区钟灵街社区", "start": "9:00",
                                                        "end": "17:00", "reason": "线路检修"})


async def test_optout_store_is_persistent_and_confirmed_once(redis, phone):
    store, conversation = OptOutStore(redis), f"sms:{phone}"
    assert await store.opt_out(conversation) is True
    assert await store.opt_out(conversation) is False  # second TD: no second confirmation
    assert await store.is_opted_out(conversation)
    assert await redis.ttl("pd:optout") == -1  # never expires
    assert await store.opt_in(conversation) is True
    assert not await store.is_opted_out(conversation)
    assert await store.opt_in(conversation) is False


async def test_proactive_to_opted_out_number_is_suppressed_reply_is_not(redis, aliyun_fake, phone):
    outbox = make_outbox(redis, aliyun_fake, Clock(NOON))
    try:
        await OptOutStore(redis).opt_out(f"sms:{phone}")
        msg = await outbox.submit(phone, outage(), PROACTIVE)
        assert (await outbox.get(msg))["state"] == "suppressed"
        reply = await outbox.submit(phone, renderer().text_messages("好的")[0], REPLY)
        assert (await outbox.get(reply))["state"] == "sent"
        assert [s["template"] for s in aliyun_fake.sent] == ["SMS_900000001"]
    finally:
        await outbox.sender.close()


async def test_quiet_hours_queue_non_urgent_until_morning(redis, aliyun_fake, phone):
    clock = Clock(NIGHT)
    outbox = make_outbox(redis, aliyun_fake, clock)
    try:
        queued = await outbox.submit(phone, outage(), PROACTIVE)
        urgent = await outbox.submit("13700000000", outage(), PROACTIVE, urgent=True)
        reply = await outbox.submit("13700000001", renderer().text_messages("收到")[0], REPLY)
        assert (await outbox.get(queued))["state"] == "queued"
        assert (await outbox.get(queued))["waiting_for"] == "quiet hours"
        assert (await outbox.get(urgent))["state"] == "sent"
        assert (await outbox.get(reply))["state"] == "sent"
        clock.advance(3600)
        await outbox.run_due()
        assert (await outbox.get(queued))["state"] == "queued"
        clock.now = datetime(2026, 11, 24, 8, 0, 1, tzinfo=SH).timestamp()
        assert await outbox.run_due() >= 1
        assert (await outbox.get(queued))["state"] == "sent"
        assert [s["phone"] for s in aliyun_fake.sent][-1] == phone
    finally:
        await outbox.sender.close()


async def test_rate_limits_are_shared_by_two_instances(redis_url, aliyun_fake, phone):
    clock = Clock(NOON)
    # Two gateway instances: separate Redis connections, separate outboxes, one Redis server.
    r1 = aioredis.from_url(redis_url, decode_responses=True)
    r2 = aioredis.from_url(redis_url, decode_responses=True)
    queue = f"pd:{{sms}}:outbox:test:{uuid.uuid4().hex}"
    a = make_outbox(r1, aliyun_fake, clock, queue_key=queue)
    b = make_outbox(r2, aliyun_fake, clock, queue_key=queue)
    try:
        first = await a.submit(phone, outage(), PROACTIVE)
        second = await b.submit(phone, outage(), PROACTIVE)
        assert (await a.get(first))["state"] == "sent"
        state = await b.get(second)
        assert state["state"] == "queued" and "rate limit" in state["waiting_for"]
        assert float(state["not_before"]) <= clock.now + 60
        # Both workers poll; only one takes the message, and only once the minute has passed.
        assert await a.run_due() + await b.run_due() == 0
        clock.advance(60)
        assert await a.run_due() + await b.run_due() == 1
        assert (await a.get(second))["state"] == "sent"
        # The hourly budget: 5 per hour whichever instance sends.
        for i in range(4):
            clock.advance(61)
            await (a if i % 2 else b).submit(phone, outage(), PROACTIVE)
        clock.advance(61)
        sixth = await a.submit(phone, outage(), PROACTIVE)
        assert (await a.get(sixth))["state"] == "queued"
        assert len([s for s in aliyun_fake.sent if s["phone"] == phone]) == 5
    finally:
        for o in (a, b):
            await o.sender.close()
        await r1.aclose()
        await r2.aclose()


async def test_reply_budget_is_separate_and_stops_loops(redis, aliyun_fake, phone):
    clock = Clock(NOON)
    limits = {**LIMITS, "reply": (RateLimit(3, 3600),)}
    outbox = make_outbox(redis, aliyun_fake, clock, limits)
    try:
        await outbox.submit(phone, outage(), PROACTIVE)
        states = []
        for _ in range(4):
            msg = await outbox.submit(phone, renderer().text_messages("好的")[0], REPLY)
            states.append((await outbox.get(msg))["state"])
        assert states == ["sent", "sent", "sent", "queued"]  # proactive did not use reply budget
        # Confirmations share the reply budget (TD/订阅 toggled in a loop), held, not lost.
        system = await outbox.submit(phone, renderer().of_kind("optout_confirm"), SYSTEM)
        assert (await outbox.get(system))["state"] == "queued"
        clock.advance(3600)
        await outbox.run_due()
        assert (await outbox.get(system))["state"] == "sent"
        assert "SMS_900000003" in [s["template"] for s in aliyun_fake.sent if s["phone"] == phone]
    finally:
        await outbox.sender.close()


async def test_throttled_then_retry_then_sent(redis, aliyun_fake, phone):
    clock = Clock(NOON)
    outbox = make_outbox(redis, aliyun_fake, clock)
    try:
        aliyun_fake.throttle_next()
        msg = await outbox.submit(phone, renderer().text_messages("好的")[0], REPLY)
        state = await outbox.get(msg)
        assert state["state"] == "queued" and "isv.BUSINESS_LIMIT_CONTROL" in state["waiting_for"]
        aliyun_fake.fail_next("isp.SYSTEM_ERROR")
        clock.advance(60)
        await outbox.run_due()
        state = await outbox.get(msg)
        assert state["state"] == "queued" and state["attempts"] == "2" and state["failures"] == "1"
        clock.advance(60)
        await outbox.run_due()
        assert (await outbox.get(msg))["state"] == "sent"
    finally:
        await outbox.sender.close()


async def test_permanent_error_stops_and_is_recorded(redis, aliyun_fake, phone):
    outbox = make_outbox(redis, aliyun_fake, Clock(NOON))
    try:
        aliyun_fake.fail_next("isv.MOBILE_NUMBER_ILLEGAL")
        msg = await outbox.submit(phone, renderer().text_messages("好的")[0], REPLY)
        state = await outbox.get(msg)
        assert state["state"] == "failed" and state["error_code"] == "isv.MOBILE_NUMBER_ILLEGAL"
        assert await redis.zscore(outbox.queue_key, msg) is None
    finally:
        await outbox.sender.close()


async def test_transient_errors_give_up_after_max_attempts(redis, aliyun_fake, phone):
    clock = Clock(NOON)
    outbox = make_outbox(redis, aliyun_fake, clock)
    try:
        aliyun_fake.fail_next("isp.SYSTEM_ERROR", times=3)
        msg = await outbox.submit(phone, renderer().text_messages("好的")[0], REPLY)
        for _ in range(3):
            clock.advance(901)
            await outbox.run_due()
        state = await outbox.get(msg)
        assert state["state"] == "failed" and state["attempts"] == "3"
        assert state["error_code"] == "isp.SYSTEM_ERROR"
    finally:
        await outbox.sender.close()


async def test_delivery_reports_any_order_duplicates_and_early(redis, aliyun_fake, phone):
    outbox = make_outbox(redis, aliyun_fake, Clock(NOON))
    try:
        msg = await outbox.submit(phone, outage(), PROACTIVE)
        (item,) = report_items(aliyun_fake.sent[-1:], report_time="2026-11-23 12:01:00")
        report = DeliveryReport(item["biz_id"], phone, True, item["err_code"], item["report_time"])
        assert await outbox.record_report(report) == "applied"
        assert (await outbox.get(msg))["state"] == "delivered"
        assert await outbox.record_report(report) == "duplicate"
        older = DeliveryReport(item["biz_id"], phone, False, "MK:0001", "2026-11-23 12:00:40")
        assert await outbox.record_report(older) == "stale"
        assert (await outbox.get(msg))["state"] == "delivered"
        # A report for a message whose send result is not recorded yet is parked, then applied.
        early = DeliveryReport("no-such-biz", phone, True, "DELIVERED", "2026-11-23 12:02:00")
        assert await outbox.record_report(early) == "parked"
    finally:
        await outbox.sender.close()


async def test_report_arriving_before_send_result_is_applied_on_send(redis, tencent_fake, phone):
    # The provider may push the receipt before our instance has stored the SendSms answer.
    outbox = make_outbox(redis, tencent_fake, Clock(NOON), provider="tencent")
    serial = f"2433:{phone}0001"
    try:
        early = DeliveryReport(serial, phone, False, "MK:0005", "2026-11-23 12:01:00")
        assert await outbox.record_report(early) == "parked"
        tencent_fake.next_serials.append(serial)
        msg = await outbox.submit(phone, outage("tencent"), PROACTIVE)
        state = await outbox.get(msg)
        assert state["provider_id"] == serial
        assert state["state"] == "undelivered" and state["report_code"] == "MK:0005"
        assert await redis.get(f"pd:{{sms}}:report-pending:tencent:{serial}:{phone}") is None
    finally:
        await outbox.sender.close()


async def test_segments_are_recorded(redis, aliyun_fake, phone):
    outbox = make_outbox(redis, aliyun_fake, Clock(NOON))
    try:
        key = "pd:{sms}:segments:20261123"  # the local (Asia/Shanghai) day of NOON
        before = int(await redis.get(key) or 0)
        long_notice = renderer().of_kind("outage_notice", {
            "area": "玄武区孝陵卫街道钟灵街社区、中山门大街沿线及周边小区", "start": "11月25日08:00",
            "end": "11月25日18:00", "reason": "10千伏线路检修及配电变压器更换"})
        assert long_notice.segments == 2
        msg = await outbox.submit(phone, long_notice, PROACTIVE)
        assert (await outbox.get(msg))["segments"] == "2"
        assert int(await redis.get(key)) - before == 2
    finally:
        await outbox.sender.close()


async def test_reply_held_into_the_night_waits_for_morning(redis, aliyun_fake, phone):
    evening = datetime(2026, 11, 23, 20, 50, 30, tzinfo=SH).timestamp()
    clock = Clock(evening)
    outbox = make_outbox(redis, aliyun_fake, clock, {**LIMITS, "reply": (RateLimit(1, 3600),)})
    try:
        await outbox.submit(phone, renderer().text_messages("好的")[0], REPLY)
        held = await outbox.submit(phone, renderer().text_messages("还有")[0], REPLY)
        assert (await outbox.get(held))["state"] == "queued"  # reply budget
        clock.now = datetime(2026, 11, 23, 21, 1, 0, tzinfo=SH).timestamp()
        await outbox.run_due()
        state = await outbox.get(held)
        assert state["state"] == "queued" and state["waiting_for"] == "quiet hours"
        clock.now = datetime(2026, 11, 24, 8, 0, 1, tzinfo=SH).timestamp()
        await outbox.run_due()
        assert (await outbox.get(held))["state"] == "sent"
    finally:
        await outbox.sender.close()


async def test_broadcast_applies_rules_per_number_and_batches_the_rest(redis, aliyun_fake):
    outbox = make_outbox(redis, aliyun_fake, Clock(NOON))
    base = random.randrange(10**8)
    opted, limited, c, d = (f"135{base + i:08d}" for i in range(4))
    try:
        await OptOutStore(redis).opt_out(f"sms:{opted}")
        await outbox.submit(limited, outage(), PROACTIVE)  # used its 1/min budget
        before = len(aliyun_fake.sent)
        ids = await outbox.submit_many([opted, limited, c, d], outage(), PROACTIVE)
        states = [(await outbox.get(i))["state"] for i in ids]
        assert states == ["suppressed", "queued", "sent", "sent"]
        batch = aliyun_fake.sent[before:]
        assert [s["phone"] for s in batch] == [c, d]
        assert {s["action"] for s in batch} == {"SendBatchSms"} and len({s["biz_id"] for s in batch}) == 1
        # The batch's delivery reports (one BizId, one report per number) land on each message.
        for item in report_items(batch, report_time="2026-11-23 12:01:00"):
            report = DeliveryReport(item["biz_id"], item["phone_number"], True, "DELIVERED",
                                    item["report_time"])
            assert await outbox.record_report(report) == "applied"
        assert [(await outbox.get(i))["state"] for i in ids[2:]] == ["delivered", "delivered"]
    finally:
        await OptOutStore(redis).opt_in(f"sms:{opted}")
        await outbox.sender.close()


async def test_broadcast_by_tencent_is_one_request_for_shared_parameters(redis, tencent_fake):
    outbox = make_outbox(redis, tencent_fake, Clock(NOON), provider="tencent")
    base = random.randrange(10**8)
    phones = [f"136{base + i:08d}" for i in range(3)]
    tencent_fake.number_code_next("Ok")
    tencent_fake.number_code_next("FailedOperation.PhoneNumberInBlacklist")
    try:
        ids = await outbox.submit_many(phones, outage("tencent"), PROACTIVE)
        states = [await outbox.get(i) for i in ids]
        assert [s["state"] for s in states] == ["sent", "failed", "sent"]
        assert states[1]["error_code"] == "FailedOperation.PhoneNumberInBlacklist"
        assert len({s["provider_id"] for s in states if s["state"] == "sent"}) == 2
        assert tencent_fake.calls == 1
    finally:
        await outbox.sender.close()


# -- leases: nothing is lost when a worker or a submitter is stopped mid-way ------------------
MORNING = datetime(2026, 11, 24, 8, 0, 1, tzinfo=SH).timestamp()


async def stop_mid_send(coro, hold) -> None:
    """Run ``coro`` until its provider call is in (held by the fake), then cancel it, as a
    deploy or a crash would; the held call is then released (the provider drops it: the
    client has gone, unless the hold says otherwise)."""
    task = asyncio.create_task(coro)
    await asyncio.wait_for(hold.arrived.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    hold.release()
    await asyncio.wait_for(hold.done.wait(), 10)


def sent_to(fake, phone) -> list[dict]:
    return [s for s in fake.sent if s["phone"] == phone]


async def test_worker_cancelled_mid_send_the_quiet_hours_notice_is_sent_after_restart(
        redis, aliyun_fake, phone):
    clock = Clock(NIGHT)
    first = make_outbox(redis, aliyun_fake, clock)
    queued = await first.submit(phone, outage(), PROACTIVE)
    assert (await first.get(queued))["waiting_for"] == "quiet hours"
    # Morning: the worker takes the notice and is stopped while the provider is slow to answer.
    clock.now = MORNING
    hold = aliyun_fake.hold_next()
    await stop_mid_send(first.run_forever(interval=0.01), hold)
    await first.sender.close()
    assert sent_to(aliyun_fake, phone) == [] and len(aliyun_fake.abandoned) == 1
    assert (await first.get(queued))["state"] == "queued"
    # A new gateway instance on the same Redis: the lease protects the message for a while,
    # then the new worker sends it.
    second = make_outbox(redis, aliyun_fake, clock, queue_key=first.queue_key)
    try:
        assert await second.run_due() == 0
        clock.advance(second.lease_seconds + 1)
        assert await second.run_due() == 1
        assert (await second.get(queued))["state"] == "sent"
        assert len(sent_to(aliyun_fake, phone)) == 1
        assert await redis.zscore(second.queue_key, queued) is None
    finally:
        await second.sender.close()


async def test_quiet_hours_notices_survive_a_restart_of_the_outbox(redis, aliyun_fake, phone):
    clock = Clock(NIGHT)
    first = make_outbox(redis, aliyun_fake, clock)
    queued = await first.submit(phone, outage(), PROACTIVE)
    await first.sender.close()
    clock.now = MORNING
    second = make_outbox(redis, aliyun_fake, clock, queue_key=first.queue_key)
    try:
        assert await second.run_due() == 1
        assert (await second.get(queued))["state"] == "sent"
    finally:
        await second.sender.close()


async def test_submit_cancelled_after_storing_loses_nothing(redis, aliyun_fake, phone):
    clock = Clock(NOON)
    first = make_outbox(redis, aliyun_fake, clock)
    hold = aliyun_fake.hold_next()
    await stop_mid_send(first.submit(phone, renderer().text_messages("您好")[0], REPLY), hold)
    await first.sender.close()
    (msg_id,) = await redis.zrange(first.queue_key, 0, -1)
    stored = await first.get(msg_id)
    assert stored["phone"] == phone and stored["state"] == "queued"
    assert await redis.zscore(first.queue_key, msg_id) == NOON + first.lease_seconds
    second = make_outbox(redis, aliyun_fake, clock, queue_key=first.queue_key)
    try:
        clock.advance(second.lease_seconds + 1)
        assert await second.run_due() == 1
        assert (await second.get(msg_id))["state"] == "sent"
        assert len(sent_to(aliyun_fake, phone)) == 1
    finally:
        await second.sender.close()


async def test_broadcast_cancelled_mid_batch_is_sent_by_the_workers(redis, aliyun_fake):
    clock = Clock(NOON)
    base = random.randrange(10**8)
    phones = [f"137{base + i:08d}" for i in range(3)]
    first = make_outbox(redis, aliyun_fake, clock)
    hold = aliyun_fake.hold_next()
    await stop_mid_send(first.submit_many(phones, outage(), PROACTIVE), hold)
    await first.sender.close()
    assert await redis.zcard(first.queue_key) == 3
    second = make_outbox(redis, aliyun_fake, clock, queue_key=first.queue_key)
    try:
        clock.advance(second.lease_seconds + 1)
        assert await second.run_due() == 3
        assert sorted(s["phone"] for s in aliyun_fake.sent if s["phone"] in phones) == phones
    finally:
        await second.sender.close()


async def test_unrecorded_success_is_reconciled_not_sent_again_and_counted(
        redis, aliyun_fake, phone):
    # The documented window: the provider accepted the SMS but the worker stopped before it
    # read and recorded the answer. The message went alone, with its OutId: the provider's
    # query API finds it, and it is recorded as sent instead of being sent again.
    from channels.sms import metrics

    clock = Clock(NOON)
    aliyun_fake.clock = clock  # the provider dates what it accepts by the same clock
    first = make_outbox(redis, aliyun_fake, clock)
    hold = aliyun_fake.hold_next(accept_if_abandoned=True)
    await stop_mid_send(first.submit(phone, renderer().text_messages("您好")[0], REPLY), hold)
    await first.sender.close()
    assert len(sent_to(aliyun_fake, phone)) == 1  # accepted, but nobody read the answer
    (msg_id,) = await redis.zrange(first.queue_key, 0, -1)
    assert (await first.get(msg_id)).get("sending_since")
    before = metrics.UNKNOWN_OUTCOME._value.get()
    second = make_outbox(redis, aliyun_fake, clock, queue_key=first.queue_key)
    try:
        clock.advance(second.lease_seconds + 1)
        await second.run_due()
        state = await second.get(msg_id)
        assert state["state"] == "sent" and "sending_since" not in state
        assert len(sent_to(aliyun_fake, phone)) == 1
        assert aliyun_fake.queries[-1]["PhoneNumber"] == phone
        assert metrics.UNKNOWN_OUTCOME._value.get() == before + 1
        assert metrics.RECONCILED.labels("aliyun", "found")._value.get() >= 1
    finally:
        await second.sender.close()


async def test_an_unrecorded_batch_send_is_found_by_its_batch_reference_not_resent(
        redis, aliyun_fake, phone, caplog):
    # A batch (SendBatchSms) carries one OutId for the call; QuerySendDetails lists it with
    # each number, so the lost attempt of each message is found and not sent again.
    clock = Clock(NOON)
    aliyun_fake.clock = clock  # the provider dates what it accepts by the same clock
    other = f"139{random.randrange(10**8):08d}"
    first = make_outbox(redis, aliyun_fake, clock)
    hold = aliyun_fake.hold_next(accept_if_abandoned=True)
    await stop_mid_send(first.submit_many([phone, other], outage(), PROACTIVE), hold)
    await first.sender.close()
    assert len(sent_to(aliyun_fake, phone)) == 1
    batch = aliyun_fake.sent[-1]
    assert batch["action"] == "SendBatchSms" and batch["out_id"].startswith("b")
    assert {s["out_id"] for s in aliyun_fake.sent[-2:]} == {batch["out_id"]}
    second = make_outbox(redis, aliyun_fake, clock, queue_key=first.queue_key)
    try:
        clock.advance(second.lease_seconds + 1)
        assert await second.run_due() == 2
        assert len(sent_to(aliyun_fake, phone)) == 1 and len(sent_to(aliyun_fake, other)) == 1
        assert "may get it twice" not in caplog.text
        assert await redis.zcard(second.queue_key) == 0  # both recorded as sent
    finally:
        await second.sender.close()


async def test_graceful_stop_finishes_the_message_in_hand(redis, aliyun_fake, phone):
    clock = Clock(NOON)
    outbox = make_outbox(redis, aliyun_fake, clock)
    try:
        await outbox.submit(phone, outage(), PROACTIVE)
        held_id = await outbox.submit(phone, outage(), PROACTIVE)  # over the 1/min budget
        assert (await outbox.get(held_id))["state"] == "queued"
        clock.advance(61)
        hold = aliyun_fake.hold_next()
        worker = asyncio.create_task(outbox.run_forever(interval=0.01))
        await asyncio.wait_for(hold.arrived.wait(), 10)
        outbox.stop()
        hold.release()
        await asyncio.wait_for(worker, 10)
        assert (await outbox.get(held_id))["state"] == "sent"
        assert await redis.zcard(outbox.queue_key) == 0
    finally:
        await outbox.sender.close()


async def test_a_message_is_taken_by_one_worker_only(redis_url, aliyun_fake, phone):
    clock = Clock(NIGHT)
    clients = [aioredis.from_url(redis_url, decode_responses=True) for _ in range(3)]
    queue = f"pd:{{sms}}:outbox:test:{uuid.uuid4().hex}"
    outboxes = [make_outbox(c, aliyun_fake, clock, queue_key=queue) for c in clients]
    try:
        ids = [await outboxes[0].submit(f"{phone[:-1]}{i}", outage(), PROACTIVE) for i in range(5)]
        clock.now = MORNING
        taken = await asyncio.gather(*(o.run_due() for o in outboxes))
        assert sum(taken) == 5
        assert [(await outboxes[0].get(i))["state"] for i in ids] == ["sent"] * 5
        assert len([s for s in aliyun_fake.sent if s["phone"][:-1] == phone[:-1]]) == 5
    finally:
        for o, c in zip(outboxes, clients):
            await o.sender.close()
            await c.aclose()


async def test_verification_code_goes_at_night_despite_opt_out_and_expires_unsent(
        redis, aliyun_fake, phone):
    clock = Clock(NIGHT)
    outbox = make_outbox(redis, aliyun_fake, clock, {**LIMITS, "reply": (RateLimit(1, 3600),)})
    try:
        await OptOutStore(redis).opt_out(f"sms:{phone}")
        code = renderer().of_kind("verification_code", {"code": "482913", "minutes": 5})
        assert code.expires_in == 300
        sent = await outbox.submit(phone, code, SYSTEM)
        assert (await outbox.get(sent))["state"] == "sent"
        assert sent_to(aliyun_fake, phone)[-1]["params"] == {"code": "482913", "minutes": "5"}
        # A second code over the budget waits; once its 5 minutes are over it is not sent.
        held = await outbox.submit(phone, code, SYSTEM)
        assert (await outbox.get(held))["state"] == "queued"
        clock.advance(3600)
        await outbox.run_due()
        state = await outbox.get(held)
        assert state["state"] == "failed" and state["error_code"] == "expired"
        assert len(sent_to(aliyun_fake, phone)) == 1
    finally:
        await OptOutStore(redis).opt_in(f"sms:{phone}")
        await outbox.sender.close()


class TickingClock(Clock):
    """A clock that moves on by ``step`` seconds every time it is read (a slow machine)."""

    def __init__(self, now: float, step: float) -> None:
        super().__init__(now)
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_broadcast_leaves_what_outlasts_half_its_lease_to_the_workers(redis, aliyun_fake):
    base = random.randrange(10**8)
    phones = [f"138{base + i:08d}" for i in range(3)]
    clock = TickingClock(NOON, step=1)
    outbox = make_outbox(redis, aliyun_fake, clock)
    outbox.lease_seconds = 10
    outbox.sender.max_batch = 1  # one provider call per number: three rounds
    try:
        ids = await outbox.submit_many(phones, outage(), PROACTIVE)
        states = [(await outbox.get(i))["state"] for i in ids]
        assert states[0] == "sent" and "sent" not in states[1:]
        for msg_id in ids[1:]:  # due at once, not at the end of the lease
            assert await redis.zscore(outbox.queue_key, msg_id) <= clock.now
        assert await outbox.run_due() == len(ids) - states.count("sent")
        assert [(await outbox.get(i))["state"] for i in ids] == ["sent"] * 3
    finally:
        await outbox.sender.close()
