"""The broadcast benchmark's pure parts: audiences, their seeding (read back through the
product's own stores), the counting of duplicates and missing customers, the report check and
the figures' arithmetic."""
from __future__ import annotations

from collections import Counter

import pytest
from redis.asyncio import Redis

from bench.broadcast_bench import RunFigures, marginal_cpu_ms, rss_growth, table
from bench.broadcast_data import (BENCH_MIX, OUTAGE, TEST_MIX, Mix, customer, customers,
                                  report_adds_up, seed_backend, seed_redis, tally)
from channels.optout import OptOutStore
from integrations.customer_store import CustomerStore
from scripts.stack import Stack, free_port


def test_a_mix_is_exact_over_each_cycle_and_interleaved():
    cycle = Mix(wechat=3, sms=1).cycle()
    assert Counter(cycle) == {"wechat": 3, "sms": 1}
    total = sum(vars(TEST_MIX).values())
    kinds = [c.kind for c in customers(50 * total, TEST_MIX)]
    assert Counter(kinds) == {k: 50 * w for k, w in vars(TEST_MIX).items()}
    # Interleaved: the rare kinds are spread over the cycle, not in one block at its end.
    rare = [i for i, k in enumerate(TEST_MIX.cycle()) if k in ("web", "none", "opted_out")]
    assert rare[0] < total // 2 and max(b - a for a, b in zip(rare, rare[1:])) > 1
    with pytest.raises(ValueError):
        Mix().cycle()


def test_customers_are_unique_and_their_kind_decides_what_they_must_get():
    audience = list(customers(2000, TEST_MIX))
    assert len({c.account for c in audience}) == len({c.phone for c in audience}) == 2000
    assert all(len(c.account) == 10 and len(c.phone) == 11 for c in audience)
    both_even, both_odd = customer(0, "both"), customer(1, "both")
    assert both_even.conversations[0].startswith("wechat:")
    assert both_odd.conversations[0].startswith("sms:")
    assert customer(2, "none").skip_reason == "no_channel" and not customer(2, "none").reachable
    assert customer(3, "opted_out").skip_reason == "opted_out"
    assert customer(4, "web").reachable and customer(4, "web").skip_reason is None
    assert all(c.reachable for c in customers(100, BENCH_MIX))


def test_tally_counts_duplicates_missing_unexpected_and_strangers():
    a, b, c, d = customer(0, "wechat"), customer(1, "sms"), customer(2, "both"), customer(3, "opted_out")
    e = customer(4, "web")
    counts = {"wechat": {a.openid: 2, "oSomebodyElse0000000000000000": 1},
              "aliyun": {b.phone: 1, d.phone: 1}, "tencent": {c.phone: 1},
              "web": {}}
    result = tally([a, b, c, d, e], counts)
    assert (result.audience, result.expected, result.received) == (5, 4, 5)
    assert (result.duplicates, result.missing, result.unexpected, result.strangers) == (1, 1, 1, 1)
    assert result.examples["duplicates"] == [a.account] and result.examples["missing"] == [e.account]
    assert result.by_channel == {"wechat": 3, "sms": 3, "web": 0}
    assert not result.exactly_once

    fine = tally([a, b, e], {"wechat": {a.openid: 1}, "aliyun": {b.phone: 1}, "web": {e.web_session: 1}})
    assert fine.exactly_once and fine.received == 3


def test_the_report_check_wants_every_member_counted_once_with_reasons():
    audience = [customer(0, "wechat"), customer(1, "none"), customer(2, "opted_out")]
    good = {"audience": 3, "open": 0, "totals": {"sent": 1, "failed": 0, "skipped": 2},
            "channels": {"wechat": {"skipped": {"opted_out": 1}}, "none": {"skipped": {"no_channel": 1}}}}
    assert report_adds_up(good, audience) == []
    bad = {"audience": 3, "open": 1, "totals": {"sent": 1, "failed": 0, "skipped": 1},
           "channels": {"none": {"skipped": {"no_channel": 1}}}}
    problems = report_adds_up(bad, audience)
    assert len(problems) == 3 and any("open" in p for p in problems)
    assert any("opted_out" in p for p in problems)


def test_figures_arithmetic_and_table():
    run = RunFigures("engine 10k", 10_000, accepted=10_000, wall_seconds=8.0, sending_seconds=5.0,
                     maxrss_kb=102_400, cpu={"worker": 4.0})
    assert run.rate == 2000.0 and run.overall_rate == 1250.0
    assert RunFigures("idle", 0).rate == 0.0
    assert rss_growth(100_000, 108_000) == pytest.approx(0.08)
    large = RunFigures("engine 100k", 100_000, cpu={"worker": 94.0, "wechat fake": 30.0})
    small = RunFigures("engine 10k", 10_000, cpu={"worker": 4.0, "wechat fake": 3.0})
    assert marginal_cpu_ms(small, large) == pytest.approx({"worker": 1.0, "wechat fake": 0.3, "all": 1.3})
    lines = table([run]).splitlines()
    assert len(lines) == 2 and "2000" in lines[1] and "100.0" in lines[1] and "worker 4.0" in lines[1]


def test_seed_backend_puts_the_audience_alone_in_the_outages_area(tmp_path):
    from backends.db import Database

    path = tmp_path / "backends.sqlite3"
    assert seed_backend(path, customers(1200, TEST_MIX)) == 1200
    db = Database(path)
    try:
        in_area = db.query("SELECT account_number, phone FROM accounts WHERE district = ? AND street = ? "
                           "AND community = ?", OUTAGE.place)
        outage = db.one("SELECT kind, restored_offset_min FROM outages WHERE outage_id = ?",
                        (OUTAGE.outage_id,))
        others = db.one("SELECT count(*) FROM accounts")[0] - len(in_area)
    finally:
        db.close()
    assert len(in_area) == 1200 and all(r["account_number"].startswith("8") for r in in_area)
    assert tuple(outage) == ("fault", None)
    assert others > 200  # the reference data elsewhere is left alone


async def test_seed_redis_is_what_the_stores_read(tmp_path):
    stack = Stack(run_dir=tmp_path / "redis")
    try:
        redis = Redis.from_url(stack.start_embedded_redis(free_port()))
        audience = list(customers(300, TEST_MIX))
        assert await seed_redis(redis, audience, now=1_800_000_000.0, batch=64) > 300
        store, optouts = CustomerStore(redis), OptOutStore(redis)
        for c in audience:
            for cid in c.conversations:
                assert await store.get_binding(cid) == c.account
                assert await redis.get(f"pd:seen:{cid}") is not None
            indexed = await redis.smembers(f"pd:bindings:account:{c.account}")
            assert sorted(m.decode() for m in indexed) == sorted(c.conversations)
            subscribed = await store.subscribers_of(c.account, "outage")
            assert sorted(subscribed) == (sorted(c.conversations) if c.subscribed else [])
            for cid in c.conversations:
                assert await optouts.is_opted_out(cid) == (cid in c.opted_out)
        both = next(c for c in audience if c.kind == "both" and c.index % 2 == 0)
        wechat_seen, sms_seen = [int(await redis.get(f"pd:seen:{cid}")) for cid in both.conversations]
        assert wechat_seen > sms_seen  # the preferred (first) conversation was used last
        await redis.aclose()
    finally:
        stack.stop()
