"""The scheduler: each slot fires in one copy only, and unfinished campaigns are resumed (held
recipients when due, a dead worker's recipients, an audience whose reading stopped midway)."""
from __future__ import annotations

import asyncio
from datetime import datetime

from channels.broadcast.campaigns import Campaigns
from channels.broadcast.config import EngineConfig, Slot, parse_schedule
from channels.broadcast.scheduler import Scheduler, slot_id
from tests.channels.broadcast.engine_support import (DAY, NIGHT, SH, Plan, Source, wechat_audience,
                                                     wechat_counts)


def plan_of(meta):
    return Plan(campaign_id=meta["campaign_id"], kind=meta["kind"], stage=meta["stage"],
                notice_kind=meta["notice_kind"], urgent=meta["urgent"] == "1", title=meta["title"])


def test_slots_daily_and_every():
    daily, every = parse_schedule("bill_issued=09:00;outage=*/10m")
    assert daily == Slot("bill_issued", daily=(9, 0)) and every == Slot("outage", every=600)
    morning = datetime(2026, 11, 27, 8, 59, tzinfo=SH).timestamp()
    assert slot_id(daily, morning, SH) is None
    assert slot_id(daily, morning + 60, SH) == ("2026-11-27", 172800)
    assert slot_id(daily, NIGHT, SH) == ("2026-11-27", 172800)  # late today: still fires once
    assert slot_id(every, DAY, SH) == slot_id(every, DAY + 1, SH)
    assert slot_id(every, DAY, SH) != slot_id(every, DAY + 600, SH)


async def test_two_schedulers_fire_each_slot_once_and_send_each_notice_once(make_engine, fakes,
                                                                             redis, clock):
    wechat, _sms = fakes
    source = Source(wechat_audience(60))
    config = EngineConfig(rates={}, schedule=parse_schedule("outage=*/10m"), batch=10)
    schedulers = [Scheduler(await make_engine(batch=10), source, config, "Asia/Shanghai",
                            plan_of=plan_of, clock=clock, owner=f"s{i}") for i in range(2)]
    fired = await asyncio.gather(*(s.fire_due() for s in schedulers))
    assert sorted(fired, key=len) == [[], ["outage:O-1:notice"]]
    await asyncio.gather(*(s.resume() for s in schedulers))  # both work on it
    await asyncio.gather(*(s.wait_idle() for s in schedulers))
    counts = wechat_counts(wechat)
    assert len(counts) == 60 and set(counts.values()) == {1}
    assert (await Campaigns(redis).meta("outage:O-1:notice"))["state"] == "done"
    assert await asyncio.gather(*(s.fire_due() for s in schedulers)) == [[], []]  # same slot
    clock.now += 600  # the next slot: the same campaign again, nobody notified twice
    fired = await asyncio.gather(*(s.fire_due() for s in schedulers))
    assert sorted(fired, key=len) == [[], ["outage:O-1:notice"]]
    await asyncio.gather(*(s.wait_idle() for s in schedulers))
    assert wechat_counts(wechat) == counts
    assert await Campaigns(redis).unfinished() == []


async def test_resume_finishes_held_and_half_planned_campaigns(make_engine, fakes, redis, clock):
    wechat, _sms = fakes
    clock.now = NIGHT
    engine = await make_engine()
    assert await engine.run(Plan(), Source(wechat_audience(5))) == "waiting"
    broken = Plan(campaign_id="outage:O-2:notice", subject={"outage_id": "O-2"})
    source = Source(wechat_audience(8, start=10), [broken])
    source.fail_after = 3
    await engine.open(broken)
    try:
        await engine.plan_audience(broken, source)
    except ConnectionError:
        pass
    source.fail_after = None
    scheduler = Scheduler(await make_engine(), source, EngineConfig(rates={}, schedule=()),
                          "Asia/Shanghai", plan_of=plan_of, clock=clock)
    clock.now = DAY + 86400  # the next afternoon
    assert sorted(await scheduler.resume()) == ["outage:O-1:notice", "outage:O-2:notice"]
    await scheduler.wait_idle()
    counts = wechat_counts(wechat)
    assert len(counts) == 13 and set(counts.values()) == {1}
    assert await Campaigns(redis).unfinished() == []


async def test_run_forever_stops_when_asked(make_engine, fakes, redis, clock):
    stop = asyncio.Event()
    scheduler = Scheduler(await make_engine(), Source(wechat_audience(3)),
                          EngineConfig(rates={}, schedule=parse_schedule("outage=*/5m"),
                                       tick_seconds=0.05),
                          "Asia/Shanghai", plan_of=plan_of, clock=clock)
    task = asyncio.create_task(scheduler.run_forever(stop))
    for _ in range(100):
        if (await Campaigns(redis).meta("outage:O-1:notice") or {}).get("state") == "done":
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(wechat_counts(fakes[0])) == 3


async def test_a_slot_whose_plans_failed_fires_again(make_engine, fakes, redis, clock):
    wechat, _sms = fakes
    source = Source(wechat_audience(2))
    calls = 0
    plans = source.plans

    async def flaky(kind, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("outage backend down")
        return await plans(kind, **kwargs)

    source.plans = flaky
    scheduler = Scheduler(await make_engine(), source,
                          EngineConfig(rates={}, schedule=parse_schedule("outage=*/10m")),
                          "Asia/Shanghai", plan_of=plan_of, clock=clock)
    await scheduler.tick()  # logged, not raised
    assert await scheduler.fire_due() == ["outage:O-1:notice"]
    await scheduler.wait_idle()
    assert len(wechat_counts(wechat)) == 2
