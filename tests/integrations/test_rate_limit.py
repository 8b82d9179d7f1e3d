"""Token buckets against a real Redis server, with the clock pinned by the caller."""
from __future__ import annotations

import pytest
from redis.asyncio import Redis

from integrations.rate_limit import Bucket, Rate, TokenBuckets, address_key, parse_rate
from tests.support.ports import free_port

T0 = 1_800_000_000.0  # any fixed moment: the buckets only compare times they were given


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def buckets(redis, request):
    # A namespace per test: the session's Redis is shared by every test.
    return TokenBuckets(redis, f"test-{request.node.name}")


@pytest.mark.parametrize("raw, rate", [
    ("30/min", Rate(30, 60)), ("10/h", Rate(10, 3600)), ("5 / 2s", Rate(5, 2)),
    ("100/day", Rate(100, 86400)), ("off", None), ("0", None), (" OFF ", None),
])
def test_parse_rate(raw, rate):
    assert parse_rate(raw, "X") == rate


@pytest.mark.parametrize("raw", ["", "30", "30/week", "-1/min", "0/min", "abc", "30/min,5/h"])
def test_parse_rate_refuses_anything_else_naming_the_variable(raw):
    with pytest.raises(ValueError, match="WEBCHAT_RATE_PER_SESSION"):
        parse_rate(raw, "WEBCHAT_RATE_PER_SESSION")


def test_address_key_is_the_ipv4_address_or_the_ipv6_slash_64():
    assert address_key("203.0.113.9") == address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("not an address") == "not an address"


async def test_a_burst_up_to_the_count_then_refusal_then_refill(buckets):
    session = Bucket("session:a", Rate(3, 60))  # 3, then one every 20 s
    assert [(await buckets.take([session], now=T0)).allowed for _ in range(4)] == [True, True, True, False]
    refused = await buckets.take([session], now=T0 + 1)
    assert refused.refused_by == "session:a" and refused.retry_after == pytest.approx(19.0)
    assert not (await buckets.take([session], now=T0 + 19.9)).allowed
    assert (await buckets.take([session], now=T0 + 20.0)).allowed
    assert not (await buckets.take([session], now=T0 + 20.1)).allowed
    # Long idle: full again, never more than the count.
    assert [(await buckets.take([session], now=T0 + 3600)).allowed for _ in range(4)] == [True, True, True, False]


async def test_all_or_nothing_a_refused_take_costs_no_other_bucket(buckets):
    session = Bucket("session:b", Rate(5, 60))
    address = Bucket("address:203.0.113.9", Rate(1, 60))
    assert (await buckets.take([session, address], now=T0)).allowed
    refused = await buckets.take([session, address], now=T0)
    assert (refused.allowed, refused.refused_by) == (False, "address:203.0.113.9")
    # The session bucket lost only the first token: four more for it alone.
    assert [(await buckets.take([session], now=T0)).allowed for _ in range(5)] == [True] * 4 + [False]


async def test_lowering_the_rate_takes_effect_at_once(buckets):
    assert (await buckets.take([Bucket("address:x", Rate(300, 60))], now=T0)).allowed
    lowered = Bucket("address:x", Rate(2, 60))
    assert [(await buckets.take([lowered], now=T0)).allowed for _ in range(3)] == [True, True, False]


async def test_keys_share_a_hash_tag_and_expire_once_full_again(buckets, redis):
    await buckets.take([Bucket("session:c", Rate(10, 60)), Bucket("address:y", Rate(10, 3600))])
    keys = [buckets.key("session:c"), buckets.key("address:y")]
    assert all(k.startswith("pd:ratelimit:{test-") for k in keys)
    ttls = [await redis.pttl(k) for k in keys]
    assert 0 < ttls[0] <= 61_000 and 3_500_000 < ttls[1] <= 3_601_000


async def test_redis_clock_by_default_and_script_reloaded_after_a_flush(buckets, redis):
    once = Bucket("once", Rate(1, 3600))
    assert (await buckets.take([once])).allowed
    await redis.script_flush()
    refused = await buckets.take([once])
    assert not refused.allowed and 3590 < refused.retry_after <= 3600


async def test_works_with_decoded_responses(redis_url, request):
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        decoded = TokenBuckets(client, f"test-{request.node.name}")
        bucket = Bucket("d", Rate(1, 60))
        assert (await decoded.take([bucket], now=T0)).allowed
        assert (await decoded.take([bucket], now=T0)).retry_after == pytest.approx(60.0)
    finally:
        await client.aclose()


async def test_redis_down_allows_and_says_degraded():
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        verdict = await TokenBuckets(client, "test-down").take([Bucket("e", Rate(1, 60))])
    finally:
        await client.aclose()
    assert verdict.allowed and verdict.degraded
