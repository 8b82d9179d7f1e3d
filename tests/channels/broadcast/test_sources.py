"""BroadcastSources against the real reference backends (loopback HTTP, pinned clock) and a real
Redis: which campaigns are due, and who is in each audience on which conversations."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from backends import demo_accounts as demo
from channels.broadcast.campaigns import Campaigns, plan_from_meta
from channels.broadcast.config import BroadcastConfig
from channels.broadcast.report import campaign_report
from channels.broadcast.sources import BroadcastSources, CampaignPlan, order_conversations
from fakes.broadcast_fakes import sms_counts, wechat_counts
from integrations.customer_store import BINDING_INDEX_MARKER, CustomerStore
from tests.support.redis_db import BROADCAST_SOURCES_DB, redis_database

# The pinned clock of the backends fixture: Monday 2026-11-23 10:30 +08:00.


@pytest.fixture
async def client(redis_url: str):
    redis = aioredis.Redis.from_url(redis_database(redis_url, BROADCAST_SOURCES_DB), decode_responses=True)
    await redis.flushdb()
    yield redis
    await redis.aclose()


@pytest.fixture
def store(client) -> CustomerStore:
    return CustomerStore(client)


def _sources(backends, store, client, **config) -> BroadcastSources:
    return BroadcastSources(backends.clients.billing, backends.clients.outage, store, client,
                            BroadcastConfig(**config))


async def _ids(sources: BroadcastSources, kind: str, now, **kwargs) -> list[str]:
    return [p.campaign_id for p in await sources.plans(kind, now=now, **kwargs)]


async def _audience(sources: BroadcastSources, plan: CampaignPlan, page_size: int = 500) -> list:
    return [r async for r in sources.recipients(plan, page_size=page_size)]


async def _plan(sources: BroadcastSources, kind: str, campaign_id: str, now, **kwargs) -> CampaignPlan:
    return next(p for p in await sources.plans(kind, now=now, **kwargs) if p.campaign_id == campaign_id)


async def _seen(client, cid: str, at: int) -> None:
    await client.set(f"pd:seen:{cid}", str(at), ex=400 * 86400)


async def test_bill_plans_at_a_pinned_moment(backends, store, client):
    sources = _sources(backends, store, client)
    now = backends.clock.now
    assert await _ids(sources, "bill_issued", now) == ["bill_issued:2026-10"]
    # Bills fall due on the 25th: within 3 days (default) there is one campaign, named by its due date.
    assert await _ids(sources, "due_reminder", now) == ["due_reminder:2026-11-25:3"]
    assert await _ids(sources, "due_reminder", now, due_within=1) == []
    assert await _ids(sources, "due_reminder", now, due_within=2) == ["due_reminder:2026-11-25:2"]
    # The next day's run names the same campaign (the engine sends it once).
    assert await _ids(sources, "due_reminder", now + timedelta(days=1)) == ["due_reminder:2026-11-25:3"]
    assert await _ids(sources, "due_reminder", now + timedelta(days=3)) == []
    arrears = await sources.plans("arrears", now=now)
    assert [(p.campaign_id, p.stage, p.notice_kind) for p in arrears] == [
        ("arrears:2026-11", "arrears", "arrears"), ("arrears:low_balance:2026-W48", "low_balance", "low_balance")]
    assert arrears[1].subject == {"below": "100.00"}
    assert await sources.plans("arrears", now=now) == arrears  # deterministic
    with pytest.raises(ValueError):
        await sources.plans("lottery", now=now)
    with pytest.raises(ValueError):
        await sources.plans("bill_issued", now=now.replace(tzinfo=None))


async def test_outage_plans_follow_the_notice_stages(backends, store, client):
    now = backends.clock.now
    sources = _sources(backends, store, client)
    plans = {p.campaign_id: p for p in await sources.plans("outage", now=now)}
    planned = await backends.clients.outage.find_outages(status="planned")
    faults = [o for o in await backends.clients.outage.find_outages(status="ongoing") if o.kind == "fault"]
    expected = set()
    for o in planned:
        left = o.start_time - now
        suffix = f":r{o.revision}" if o.revision > 1 else ""
        if left <= timedelta(hours=24):
            expected.add(f"outage:{o.outage_id}:imminent{suffix}")
        elif left <= timedelta(days=7) and o.announced_at <= now:
            expected.add(f"outage:{o.outage_id}:notice{suffix}")
    expected |= {f"outage:{o.outage_id}:fault" for o in faults}
    assert set(plans) == expected
    # The demo outages: 百家湖 tomorrow 08:30 (22 hours: imminent), 翠屏 fault now (urgent).
    assert "outage:JH00001:imminent" in plans and plans["outage:JH00001:imminent"].urgent is False
    fault = plans["outage:GZ00002:fault"]
    assert (fault.urgent, fault.notice_kind, fault.subject["community"]) == (True, "outage_notice", "翠屏社区")
    moved = [p for p in plans.values() if p.campaign_id.endswith(":r2")]
    assert len(moved) == 1 and moved[0].subject["previous_start_iso"]
    assert any(o.start_time - now > timedelta(days=7) for o in planned)  # later ones wait

    # Configurable: no imminent stage, and a 3-day notice period.
    short = _sources(backends, store, client, outage_imminent_hours=0, outage_notice_days=3)
    ids = await _ids(short, "outage", now)
    assert "outage:JH00001:notice" in ids
    assert not any(p.stage == "notice" and datetime_of(p) - now > timedelta(days=3)
                   for p in await short.plans("outage", now=now))
    # A day later tomorrow's outage has started (no more notices), the next one is imminent.
    later = await _ids(sources, "outage", now + timedelta(days=1))
    assert not any(i.startswith("outage:JH00001:") for i in later)


def datetime_of(plan: CampaignPlan) -> datetime:
    return datetime.fromisoformat(plan.subject["start_iso"])


async def test_one_outage_by_id(backends, store, client):
    now = backends.clock.now
    sources = _sources(backends, store, client)
    planned = await backends.clients.outage.find_outages(status="planned")
    far = next(o for o in planned if o.start_time - now > timedelta(days=8))
    # An operator may announce an outage before its notice period.
    assert await _ids(sources, "outage", now, outage_id=far.outage_id) == [f"outage:{far.outage_id}:notice"]
    assert await _ids(sources, "outage", now, outage_id="GZ00002") == ["outage:GZ00002:fault"]
    assert await _ids(sources, "outage", now, outage_id="NOPE") == []
    assert await _ids(sources, "restoration", now, outage_id="GZ00002") == []  # not restored yet


async def test_restorations_within_the_lookback(backends, store, client):
    now = backends.clock.now
    sources = _sources(backends, store, client)
    everything = await backends.clients.outage.find_outages(status="all")
    expected = {f"restoration:{o.outage_id}" for o in everything
                if o.status == "restored" and now - timedelta(hours=24) < (o.restored_at or o.end_time) <= now}
    plans = await sources.plans("restoration", now=now)
    assert {p.campaign_id for p in plans} == expected and len(expected) >= 2
    assert all(p.notice_kind == "power_restored" and p.subject["restored_at_iso"] for p in plans)
    shorter = _sources(backends, store, client, restoration_lookback_hours=1)
    assert len(await shorter.plans("restoration", now=now)) < len(plans)


async def test_outage_audience_one_recipient_per_account(backends, store, client):
    """Every active account of the affected area, once; its bound conversations and outage
    subscribers, the one used last first; accounts without any conversation too."""
    now = backends.clock.now
    sources = _sources(backends, store, client)
    plan = await _plan(sources, "outage", "outage:GZ00002:fault", now)
    area = [c async for page in backends.clients.billing.area_accounts(
        "江宁区", "秣陵街道", "翠屏社区") for c in page]
    neighbour = next(c.account_number for c in area if c.account_number != demo.OVERDUE)
    wechat, sms, web = "wechat:o-overdue", f"sms:{demo.OVERDUE_PHONE}", "web:neighbour-session-0001"
    await store.bind(wechat, demo.OVERDUE)
    await store.bind(sms, demo.OVERDUE)
    await store.subscribe_reminder(wechat, demo.OVERDUE, ["outage"])
    await store.bind(web, neighbour)
    await store.bind("wechat:o-elsewhere", demo.RESIDENTIAL_TOU)  # outside the area
    await store.bind("web:expired-session-0001", neighbour)
    await client.delete(CustomerStore._binding_key("web:expired-session-0001"))  # idle TTL ran out
    await _seen(client, sms, 1_000)
    await _seen(client, wechat, 2_000)  # used last

    recipients = await _audience(sources, plan)
    assert [r.customer for r in recipients] == [c.account_number for c in area]
    by_account = {r.customer: r for r in recipients}
    overdue = by_account[demo.OVERDUE]
    assert overdue.conversations == (wechat, sms)  # one recipient, last used first (not by id)
    assert overdue.phone == demo.OVERDUE_PHONE
    assert by_account[neighbour].conversations == (web,)
    others = [r for r in recipients if r.customer not in (demo.OVERDUE, neighbour)]
    assert others and all(r.conversations == () and r.phone for r in others)
    params = overdue.params
    assert params["account"] == "******5678" and demo.OVERDUE not in json.dumps(params)
    assert (params["outage_kind"], params["outage_kind_text"], params["stage"]) == ("fault", "故障停电", "fault")
    assert params["area"].startswith("翠屏社区") and params["reason"]
    assert params["start"].startswith("11月23日 ") and params["end"] == params["restore_time"]

    # The same audience in pages of 2, and with the channels ordered by configuration.
    assert await _audience(sources, plan, page_size=2) == recipients
    ordered = _sources(backends, store, client, channel_preference=("sms", "wechat", "web"))
    assert {r.customer: r.conversations for r in await _audience(ordered, plan)}[demo.OVERDUE] == (sms, wechat)


async def test_a_plan_rebuilt_from_its_stored_fields_reads_the_same_audience(backends, store, client):
    now = backends.clock.now
    sources = _sources(backends, store, client)
    for plan in [*(await sources.plans("outage", now=now))[:2], *(await sources.plans("arrears", now=now))]:
        meta = {"campaign_id": plan.campaign_id, "kind": plan.kind, "stage": plan.stage,
                "notice_kind": plan.notice_kind, "urgent": "1" if plan.urgent else "0", "title": plan.title,
                "subject": json.dumps(plan.subject, ensure_ascii=False)}
        rebuilt = plan_from_meta(meta)
        assert rebuilt == plan
        assert await _audience(sources, rebuilt, page_size=50) == await _audience(sources, plan)


async def test_bindings_made_before_the_index_reach_the_outage_audience(backends, store, client):
    now = backends.clock.now
    await client.set(CustomerStore._binding_key("wechat:o-older"), demo.RESIDENTIAL_TOU)  # no index entry
    assert not await client.exists(BINDING_INDEX_MARKER)
    sources = _sources(backends, store, client)
    plan = await _plan(sources, "outage", "outage:JH00001:imminent", now)
    recipients = {r.customer: r for r in await _audience(sources, plan)}
    assert recipients[demo.RESIDENTIAL_TOU].conversations == ("wechat:o-older",)
    assert await client.exists(BINDING_INDEX_MARKER)
    assert recipients[demo.RESIDENTIAL_TOU].params["community"] == "百家湖社区"


async def test_bill_audiences_are_the_bill_due_subscribers(backends, store, client):
    now = backends.clock.now
    sources = _sources(backends, store, client)
    await store.bind("wechat:o-overdue", demo.OVERDUE)
    await store.subscribe_reminder("wechat:o-overdue", demo.OVERDUE, ["bill_due"])
    await store.bind("sms:13800000000", demo.OVERDUE)  # bound, not subscribed: not for bills
    bills = {b.account.account_number: b.bill async for page in backends.clients.billing.month_bills("2026-10")
             for b in page}
    other = next(a for a, b in sorted(bills.items()) if b.status == "unpaid" and a != demo.OVERDUE)
    await store.bind("wechat:o-other", other)
    await store.subscribe_reminder("wechat:o-other", other, ["outage"])  # another kind

    issued = {r.customer: r for r in await _audience(sources, (await sources.plans("bill_issued", now=now))[0],
                                                      page_size=40)}
    assert set(issued) == {a for a, b in bills.items() if b.status != "paid" and b.amount > 0}
    assert demo.COMMERCIAL not in issued  # prepaid: settled from the credit
    overdue = issued[demo.OVERDUE]
    assert overdue.conversations == ("wechat:o-overdue",) and overdue.phone == demo.OVERDUE_PHONE
    assert overdue.params == {"account": "******5678", "month": "2026年10月", "bill_month": "2026-10",
                              "amount": str(bills[demo.OVERDUE].amount.quantize(Decimal("0.01"))),
                              "kwh": str(bills[demo.OVERDUE].kwh_total), "due_date": "2026年11月25日",
                              "due_date_iso": "2026-11-25"}
    assert issued[other].conversations == ()
    assert demo.RESIDENTIAL_TOU not in issued  # a prompt payer: paid by the 23rd

    due_plan = (await sources.plans("due_reminder", now=now))[0]
    due = {r.customer: r for r in await _audience(sources, due_plan)}
    assert due[demo.OVERDUE].params["days_left"] == "2" and due[demo.OVERDUE].conversations == ("wechat:o-overdue",)
    assert set(due) <= set(issued)

    arrears_plan, low_plan = await sources.plans("arrears", now=now)
    arrears = {r.customer: r for r in await _audience(sources, arrears_plan)}
    assert arrears[demo.OVERDUE].params["months"] == "2026年9月"
    assert arrears[demo.OVERDUE].params["due_date"] == "2026年10月25日"
    assert arrears[demo.OVERDUE].conversations == ("wechat:o-overdue",)
    low = await _audience(sources, low_plan)
    assert low and all(Decimal(r.params["balance"]) < 100 and r.params["threshold"] == "100.00" for r in low)
    assert all(r.conversations == () for r in low)


def test_order_of_conversations():
    seen = {"wechat:a": 100, "sms:1": 300, "web:x": 200}
    assert order_conversations(["wechat:a", "sms:1", "web:x"], seen) == ("sms:1", "web:x", "wechat:a")
    assert order_conversations(["wechat:b", "wechat:a"], {}) == ("wechat:a", "wechat:b")  # never seen: by id
    assert order_conversations(["web:x", "wechat:a", "sms:1", "sms:2"], seen, ("wechat", "sms")) == (
        "wechat:a", "sms:1", "sms:2", "web:x")
    assert order_conversations(["sms:1", "sms:1"], seen) == ("sms:1",)


async def test_the_engine_sends_a_fault_notice_to_the_area_once_per_customer(backends, make_engine, fakes, redis):
    """The real sources behind the engine, the WeChat and SMS fakes at the end: a customer with
    WeChat and SMS conversations gets one notice, on the one used last; the rest of the area
    without a conversation is skipped (no_channel)."""
    wechat, sms = fakes
    store = CustomerStore(redis)
    sources = BroadcastSources(backends.clients.billing, backends.clients.outage, store, redis, BroadcastConfig())
    area = [c async for page in backends.clients.billing.area_accounts(
        "江宁区", "秣陵街道", "翠屏社区") for c in page]
    both, only_sms = area[0], area[1]
    await store.bind("wechat:o-both-0001", both.account_number)
    await store.bind(f"sms:{both.mobile}", both.account_number)
    await _seen(redis, "wechat:o-both-0001", 2_000)
    await _seen(redis, f"sms:{both.mobile}", 1_000)
    await store.bind(f"sms:{only_sms.mobile}", only_sms.account_number)
    plan = (await sources.plans("outage", outage_id="GZ00002", now=backends.clock.now))[0]
    engine = await make_engine(page_size=3)
    assert await engine.run(plan, sources) == "done"
    assert wechat_counts(wechat) == {"o-both-0001": 1}
    assert sms_counts(sms) == {only_sms.mobile: 1}
    assert await engine.run(plan, sources) == "done"  # a re-run sends nothing more
    assert wechat_counts(wechat) == {"o-both-0001": 1} and sms_counts(sms) == {only_sms.mobile: 1}
    result = await campaign_report(Campaigns(redis), plan.campaign_id)
    assert result["audience"] == len(area)
    assert result["channels"]["none"]["skipped"] == {"no_channel": len(area) - 2}
