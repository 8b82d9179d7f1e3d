"""The broadcast engine against real Redis, a real Deliverer and the WeChat and Aliyun SMS
loopback fakes: each customer of a campaign gets the notice at most once and ends sent or
skipped with a reason, across re-runs, two workers, a crashed worker and a crashed planner."""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from channels.broadcast.campaigns import (Campaigns, Outcome, decode_entry, encode_member, stream_entries,
                                          key, plan_from_meta)
from channels.broadcast.engine import (PAUSE_KEY, WORKER_KEY, ReportConsumer, notice_key,
                                       parse_notice_key)
from channels.broadcast.report import campaign_report
from channels.broadcast.sources import CampaignPlan
from channels.config import GatewayConfig
from channels.messages import DeliveryResult, Notice
from channels.optout import OptOutStore
from channels.webchat_outbox import WebChatAdapter
from integrations.rate_limit import Rate
from tests.channels.broadcast.engine_support import (MORNING, NIGHT, OUTAGE_PARAMS, Plan,
                                                     Recipient, Source, sms_counts,
                                                     wechat_audience, wechat_counts)


async def report(redis, campaign_id: str = "outage:O-1:notice") -> dict:
    result = await campaign_report(Campaigns(redis), campaign_id)
    assert result is not None
    return result


async def test_recipient_states_move_only_forward_and_counters_follow(redis):
    campaigns = Campaigns(redis)
    plan = Plan()
    assert await campaigns.create(plan, 1.0)
    assert not await campaigns.create(plan, 2.0)  # the same id: nothing new
    member = encode_member("3100000001", ("wechat:o1",), None, {"a": "1", "b": "2"}, {"a": "1"})
    rows = [("3100000001", member, ""), ("3100000002", member, "no_channel")]
    assert await campaigns.add(plan.campaign_id, rows, shared='{"a":"1"}') == 2
    assert await campaigns.add(plan.campaign_id, rows) == 0  # planning again adds nobody
    await campaigns.planned(plan.campaign_id)
    entries = await campaigns.read(plan.campaign_id, "w1", 10)
    assert [decode_entry(p) for _, p in entries] == [
        [("3100000001", ("wechat:o1",), None, {"a": "1", "b": "2"})]]
    assert await campaigns.claim(plan.campaign_id, ["3100000001", "3100000002"]) == [0, -1]
    assert await campaigns.claim(plan.campaign_id, ["3100000001"]) == [-2]  # taken over
    entry_id = entries[0][0]
    sent = Outcome("3100000001", entry_id, "sent", "wechat")
    assert await campaigns.finish(plan.campaign_id, [sent], 5) == 1
    assert await campaigns.finish(plan.campaign_id, [replace(sent, state="failed")], 5) == 0
    assert await campaigns.recipient(plan.campaign_id, "3100000001") == {
        "state": "sent", "channel": "wechat", "reason": "", "attempts": 0}
    assert await campaigns.pending(plan.campaign_id) == 0
    counters = await campaigns.counters(plan.campaign_id)
    assert counters.values == {"audience": 2, "open": 0, "c:wechat:sent": 1,
                               "c:none:skipped:no_channel": 1}
    assert (await campaigns.meta(plan.campaign_id))["state"] == "done"


async def test_a_campaign_reaches_each_customer_once_and_a_rerun_sends_nothing(make_engine, fakes,
                                                                               redis):
    wechat, _sms = fakes
    audience = wechat_audience(25) + [Recipient("3199999999", ()),
                                      Recipient("3199999998", ("alipay:u1",))]
    source = Source(audience)
    engine = await make_engine(batch=7, page_size=10)
    assert await engine.run(Plan(), source) == "done"
    counts = wechat_counts(wechat)
    assert len(counts) == 25 and set(counts.values()) == {1}
    result = await report(redis)
    assert result["state"] == "done" and result["audience"] == 27 and result["open"] == 0
    assert result["channels"]["wechat"]["sent"] == 25
    assert result["channels"]["none"]["skipped"] == {"no_channel": 2}
    assert source.pages == 3  # 27 recipients read 10 at a time

    again = await make_engine()
    assert await again.run(Plan(), source) == "done"
    assert wechat_counts(wechat) == counts
    assert await report(redis) == result


async def test_two_workers_at_once_send_each_notice_once(make_engine, fakes, redis):
    wechat, _sms = fakes
    source = Source(wechat_audience(120))
    first = await make_engine(batch=10, consumer="w1")
    second = await make_engine(batch=10, consumer="w2")
    assert await asyncio.gather(first.run(Plan(), source), second.run(Plan(), source)) == [
        "done", "done"]
    counts = wechat_counts(wechat)
    assert len(counts) == 120 and set(counts.values()) == {1}
    result = await report(redis)
    assert result["channels"]["wechat"]["sent"] == 120 and result["open"] == 0


async def test_a_dead_workers_recipients_are_taken_over_and_sent_once(make_engine, fakes, redis):
    wechat, _sms = fakes
    source = Source(wechat_audience(40))
    engine = await make_engine(batch=5)  # BROADCAST_CLAIM_IDLE_SECONDS 60
    await engine.open(Plan())
    assert await engine.plan_audience(Plan(), source)
    campaigns = Campaigns(redis)
    # A worker read 3 batches (15 recipients), claimed them (state "sending") and was killed:
    # no heartbeat, so its recipients are taken over at once.
    entries = await campaigns.read(Plan().campaign_id, "dead-worker", 3)
    customers = [m[0] for _, p in entries for m in decode_entry(p)]
    assert len(customers) == 15
    await campaigns.claim(Plan().campaign_id, customers)
    assert await campaigns.pending(Plan().campaign_id) == 3
    assert await engine.work(Plan().campaign_id) == "done"
    counts = wechat_counts(wechat)
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert await campaigns.pending(Plan().campaign_id) == 0
    assert (await report(redis))["channels"]["wechat"]["sent"] == 40


async def test_a_stuck_workers_recipients_are_taken_over_after_the_claim_idle_time(make_engine,
                                                                                  fakes, redis):
    wechat, _sms = fakes
    engine = await make_engine(claim_idle_seconds=0.5, batch=2)
    await engine.open(Plan())
    assert await engine.plan_audience(Plan(), Source(wechat_audience(10)))
    campaigns = Campaigns(redis)
    await redis.set(WORKER_KEY.format("stuck-worker"), "1", ex=60)  # alive, but never finishes
    entries = await campaigns.read(Plan().campaign_id, "stuck-worker", 2)
    await campaigns.claim(Plan().campaign_id, [m[0] for _, p in entries for m in decode_entry(p)])
    started = asyncio.get_running_loop().time()
    assert await engine.work(Plan().campaign_id) == "done"
    assert asyncio.get_running_loop().time() - started >= 0.4  # waited for the idle time
    assert len(wechat_counts(wechat)) == 10 and set(wechat_counts(wechat).values()) == {1}


async def test_planning_stopped_midway_resumes_and_adds_nobody_twice(make_engine, fakes, redis):
    wechat, _sms = fakes
    source = Source(wechat_audience(30))
    source.fail_after = 17
    engine = await make_engine(page_size=5)
    with pytest.raises(ConnectionError):
        await engine.run(Plan(), source)
    assert (await report(redis))["audience_complete"] is False
    source.fail_after = None
    assert await (await make_engine()).run(Plan(), source) == "done"
    counts = wechat_counts(wechat)
    assert len(counts) == 30 and set(counts.values()) == {1}
    result = await report(redis)
    assert result["audience"] == 30 and result["audience_complete"] is True


async def test_a_permanent_wechat_failure_falls_back_to_sms(make_engine, fakes, redis):
    wechat, sms = fakes
    wechat.refuse_user("o00000000", 43004)       # not following: SMS to the phone on record
    wechat.refuse_user("o00000001", 43004)       # and no phone: skipped not_following
    wechat.refuse_user("o00000002", 40003)       # invalid openid: SMS conversation of theirs
    audience = [Recipient("3100000000", ("wechat:o00000000",), "13800000000"),
                Recipient("3100000001", ("wechat:o00000001",), None),
                Recipient("3100000002", ("wechat:o00000002", "sms:13900000002"), None),
                Recipient("3100000003", ("wechat:o00000003",), "13800000003")]
    await OptOutStore(redis).opt_out("sms:13800000000")  # ... who said TD to SMS: not sent
    audience.append(Recipient("3100000004", ("wechat:o00000004",), "13800000004"))
    wechat.refuse_user("o00000004", 43004)
    assert await (await make_engine()).run(Plan(), Source(audience)) == "done"
    assert sms_counts(sms) == {"13900000002": 1, "13800000004": 1}
    assert wechat_counts(wechat) == {"o00000003": 1}
    result = await report(redis)
    assert result["channels"]["sms"]["sent"] == 2 and result["channels"]["sms"]["fallback"] == 2
    assert result["channels"]["sms"]["skipped"] == {"opted_out": 1}
    assert result["channels"]["wechat"]["skipped"] == {"not_following": 1}
    assert result["channels"]["wechat"]["sent"] == 1


async def test_quiet_hours_hold_ordinary_notices_until_morning_and_urgent_ones_go(
        make_engine, fakes, redis, clock):
    wechat, _sms = fakes
    clock.now = NIGHT
    engine = await make_engine()
    assert await engine.run(Plan(), Source(wechat_audience(12))) == "waiting"
    assert wechat_counts(wechat) == {}
    result = await report(redis)
    assert result["held"] == {"quiet_hours": 12} and result["open"] == 12
    assert result["state"] == "running"

    fault = Plan(campaign_id="outage:F-9:fault", stage="fault", urgent=True)
    assert await engine.run(fault, Source(wechat_audience(3, start=100))) == "done"
    assert len(wechat_counts(wechat)) == 3

    clock.now = MORNING
    assert await engine.work(Plan().campaign_id) == "done"
    counts = wechat_counts(wechat)
    assert len(counts) == 15 and set(counts.values()) == {1}
    result = await report(redis)
    assert result["held"] == {} and result["channels"]["wechat"]["sent"] == 12


class Throttling:
    """The web channel's adapter, answering "throttled" (as a provider's flow control maps to)
    the first ``times`` sends."""

    name = "web"

    def __init__(self, inner: WebChatAdapter, times: int, when: float | None) -> None:
        self.inner, self.times, self.when, self.calls = inner, times, when, 0

    async def send(self, user_id, content, purpose):
        self.calls += 1
        if self.calls <= self.times:
            return DeliveryResult("failed", "throttled", when=self.when, retry=True)
        return await self.inner.send(user_id, content, purpose)


async def test_throttling_pauses_the_provider_for_every_worker_and_requeues(make_engine, redis,
                                                                            clock):
    engine = await make_engine(batch=5, concurrency=1, throttle_seconds=40.0)
    throttling = Throttling(WebChatAdapter(engine.redis), times=1, when=None)
    engine.deliverer.register(throttling)
    audience = [Recipient(f"32000000{i:02d}", (f"web:{'s' * 20}{i:02d}",)) for i in range(20)]
    assert await engine.run(Plan(), Source(audience)) == "waiting"
    result = await report(redis)
    # The first answer paused the provider: at most the other batch in flight went out meanwhile
    # (none of it when the pause came first).
    held = result["held"]["throttled"]
    assert held >= 18 and result["channels"].get("web", {}).get("sent", 0) == 20 - held
    assert throttling.calls == 21 - held
    until = float(await redis.get(PAUSE_KEY.format("web")))
    assert until == pytest.approx(clock.now + 40.0)
    other = await make_engine(consumer="other")  # another worker respects the pause
    other.deliverer.register(throttling)
    assert await other.work(Plan().campaign_id) == "waiting"
    calls = throttling.calls
    clock.now += 41
    await redis.delete(PAUSE_KEY.format("web"))  # its TTL runs on Redis's own clock
    assert await other.work(Plan().campaign_id) == "done"
    assert throttling.calls == calls + held
    result = await report(redis)
    assert result["channels"]["web"]["sent"] == 20 and result["held"] == {}


async def test_transient_failures_are_retried_then_recorded_failed_and_masked(make_engine, fakes,
                                                                              redis, clock):
    wechat, _sms = fakes
    wechat.fail_next("/cgi-bin/message/template/send", -1, times=100)  # system busy, each time
    engine = await make_engine(max_attempts=2)
    assert await engine.run(Plan(), Source(wechat_audience(2))) == "waiting"
    assert (await report(redis))["held"] == {"retry": 2}
    clock.now += 31
    assert await engine.work(Plan().campaign_id) == "done"
    result = await report(redis)
    assert sum(result["channels"]["wechat"]["failed"].values()) == 2
    assert len(result["first_failures"]) == 2
    assert all("3100000000" not in line and "****" in line for line in result["first_failures"])


async def test_delivery_reports_update_the_recipients(make_engine, fakes, redis):
    source = Source(wechat_audience(3))
    assert await (await make_engine()).run(Plan(), source) == "done"
    campaign = Plan().campaign_id
    for customer, status in (("3100000000", "delivered"), ("3100000001", "undelivered"),
                             ("3100000000", "delivered"), ("9", "delivered")):
        await redis.xadd("pd:notice:reports", {"key": notice_key(campaign, customer),
                                               "channel": "wechat", "status": status,
                                               "code": "" if status == "delivered" else "43004"})
    await redis.xadd("pd:notice:reports", {"key": "otp:1", "channel": "sms", "status": "delivered"})
    consumer = ReportConsumer(redis)
    assert await consumer.run_once() == 5
    assert await consumer.run_once() == 0
    wechat = (await report(redis))["channels"]["wechat"]
    assert (wechat["sent"], wechat["delivered"], wechat["undelivered"]) == (3, 1, 1)
    assert (await Campaigns(redis).recipient(campaign, "3100000000"))["state"] == "delivered"
    assert parse_notice_key("bc:due_reminder:2026-11-28:3:3100000000") == (
        "due_reminder:2026-11-28:3", "3100000000")


async def test_dry_run_counts_channels_and_skip_reasons_and_records_nothing(
        make_engine, fakes, redis, gateway_env, clock):
    wechat, _sms = fakes
    config = GatewayConfig.from_env({**gateway_env, "DELIVERY_RATE_LIMITS": "notice=1/day"})
    engine = await make_engine(config=config)
    audience = wechat_audience(6) + [Recipient("3300000000", ()),
                                     Recipient("3300000001", ("sms:13900000001",))]
    await OptOutStore(redis).opt_out("wechat:o00000001")
    # One customer's notice budget is used up; another was notified by an earlier run.
    await engine.deliverer.deliver("wechat:o00000002", Notice("outage_notice", OUTAGE_PARAMS),
                                   "notice")
    done = Plan()
    await engine.campaigns.create(done)
    await engine.campaigns.add(done.campaign_id, [("3100000003", "{}", "no_channel")])
    dry = await engine.dry_run(done, Source(audience))
    assert dry.as_dict() == {"campaign_id": done.campaign_id, "audience": 8,
                             "channels": {"wechat": 3, "sms": 1},
                             "skipped": {"opted_out": 1, "quiet_hours": 0, "no_channel": 1,
                                         "rate_limited": 1, "already_notified": 1}}
    clock.now = NIGHT
    dry = await engine.dry_run(done, Source(audience))
    assert dry.skipped["quiet_hours"] == 5 and not dry.channels
    assert await redis.hlen(key(done.campaign_id, "state")) == 1  # nothing recorded
    assert len(wechat_counts(wechat)) == 1  # the one sent above, none by the dry runs


async def test_provider_rates_are_one_bucket_shared_by_every_worker(make_engine, redis):
    audience = [Recipient(f"32000000{i:02d}", (f"web:{'r' * 20}{i:02d}",)) for i in range(16)]
    rates = {"web": Rate(5, 1)}  # a burst of 5, then 5 a second: 16 take at least 2.2 s
    first = await make_engine(rates=rates, batch=4, consumer="w1")
    second = await make_engine(rates=rates, batch=4, consumer="w2")
    started = asyncio.get_running_loop().time()
    source = Source(audience)
    assert await asyncio.gather(first.run(Plan(), source), second.run(Plan(), source)) == [
        "done", "done"]
    assert asyncio.get_running_loop().time() - started >= 2.0
    assert (await report(redis))["channels"]["web"]["sent"] == 16


async def test_a_campaign_plan_is_rebuilt_from_its_stored_fields(redis):
    plan = CampaignPlan("outage:O-7:imminent", "outage", "imminent", "outage_notice", False,
                        "计划停电临近提醒", {"outage_id": "O-7", "area": "幸福小区"})
    campaigns = Campaigns(redis)
    await campaigns.create(plan)
    assert plan_from_meta(await campaigns.meta(plan.campaign_id)) == plan


async def test_an_sms_the_outbox_keeps_waiting_is_held_not_counted_sent(make_engine, fakes, redis,
                                                                        gateway_env):
    _wechat, sms = fakes
    config = GatewayConfig.from_env({**gateway_env, "SMS_PROACTIVE_LIMITS": "1/day"})
    engine = await make_engine(config=config)
    audience = [Recipient("3400000000", ("sms:13700000000",))]
    assert await engine.run(Plan(), Source(audience)) == "done"
    second = Plan(campaign_id="outage:O-2:notice", subject={"outage_id": "O-2"})
    # The number's daily SMS budget is used: the outbox keeps the second notice for tomorrow.
    assert await engine.run(second, Source(audience, [second])) == "waiting"
    result = await report(redis, second.campaign_id)
    assert result["held"] == {"sms_queued": 1} and result["open"] == 1
    assert result["channels"] == {} and sms_counts(sms) == {"13700000000": 1}


async def test_pauses_and_heartbeats_are_read_in_one_mget_on_a_redis_cluster(redis_cluster_url):
    from integrations.redis_url import async_client

    cluster = async_client(redis_cluster_url, decode_responses=True)
    keys = [PAUSE_KEY.format(c) for c in ("web", "wechat", "sms")] + [WORKER_KEY.format(w) for w in ("w1", "w2")]
    try:
        await cluster.set(keys[1], "123.5", ex=60)
        await cluster.set(keys[4], "1", ex=60)
        assert await cluster.mget(keys) == [None, "123.5", None, None, "1"]  # one slot: no CROSSSLOT
    finally:
        await cluster.delete(keys[1])
        await cluster.delete(keys[4])
        await cluster.aclose()


def test_a_stream_entry_carries_a_batch_with_its_shared_parameters_once():
    shared = {"area": "殷巷社区", "start": "11月28日 09:30", "account": "******0001"}
    members = [encode_member("3100000001", ("wechat:o1", "sms:13800000001"), "13800000001", shared, shared),
               encode_member("3100000002", ("sms:13800000002",), None,
                             {"area": "殷巷社区", "account": "******0002"}, shared)]
    assert "殷巷社区" not in members[0] + members[1]  # the shared values are not repeated
    payload = '{"m":' + json.dumps(shared, ensure_ascii=False) + ',"r":[' + ",".join(members) + "]}"
    assert decode_entry(payload) == [
        ("3100000001", ("wechat:o1", "sms:13800000001"), "13800000001", shared),
        ("3100000002", ("sms:13800000002",), None, {"area": "殷巷社区", "account": "******0002"})]
    # an entry written before batches (field r: one recipient) reads as a batch of one
    old = json.dumps({"c": "3100000003", "v": ["wechat:o3"], "p": "", "m": {"x": "1"}})
    [(entry_id, batch)] = stream_entries([(b"1-0", {b"r": old.encode()})])
    assert entry_id == "1-0" and decode_entry(batch) == [("3100000003", ("wechat:o3",), None, {"x": "1"})]
