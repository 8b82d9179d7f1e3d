"""The channel-neutral opt-out store and the migration of the two legacy stores, on real Redis."""
from __future__ import annotations

import uuid

import pytest

from channels.key_migration import DONE_KEY
from channels.optout import LEGACY_SMS_KEY, OptOutStore


@pytest.fixture
def store_key() -> str:
    return f"pd:test:optout:{uuid.uuid4().hex}"


@pytest.fixture
async def legacy_clean(redis):
    """The legacy stores are global keys: start and end every migration test without them."""
    async def clean() -> None:
        keys = [k async for k in redis.scan_iter(match="pd:optout:wechat:*")]
        await redis.delete(LEGACY_SMS_KEY, *keys)
    await clean()
    yield
    await clean()


async def test_opt_out_and_back_in_by_conversation_id(redis, store_key):
    store = OptOutStore(redis, store_key)
    assert not await store.is_opted_out("sms:13812345678")
    assert await store.opt_out("sms:13812345678", at=1_700_000_000) is True
    assert await store.opt_out("sms:13812345678") is False  # confirmed once, time kept
    assert await redis.hget(store_key, "sms:13812345678") == b"1700000000"
    assert await store.is_opted_out("sms:13812345678")
    assert not await store.is_opted_out("wechat:13812345678")  # another conversation
    assert await redis.ttl(store_key) == -1                     # never expires
    assert await store.opt_in("sms:13812345678") is True
    assert await store.opt_in("sms:13812345678") is False
    assert not await store.is_opted_out("sms:13812345678")


async def test_events_that_carry_their_time_resolve_by_the_newer_one(redis, store_key):
    store = OptOutStore(redis, store_key)
    assert await store.opt_out("wechat:oA", at=1000) is True      # unsubscribed at 1000
    assert await store.opt_in("wechat:oA", at=900) is False       # an older follow: ignored
    assert await store.is_opted_out("wechat:oA")
    assert await store.opt_out("wechat:oA", at=1200) is False     # a newer unsubscribe: time moves
    assert await store.opt_out("wechat:oA", at=1100) is False     # an older one: ignored
    assert await redis.hget(store_key, "wechat:oA") == b"1200"
    assert await store.opt_in("wechat:oA", at=1150) is False      # older than the last unsubscribe
    assert await store.opt_in("wechat:oA", at=1300) is True       # re-followed after it
    assert not await store.is_opted_out("wechat:oA")
    assert await store.opt_in("wechat:oA", at=1400) is False      # nothing to undo


async def test_batch_check_and_count(redis, store_key):
    store = OptOutStore(redis, store_key)
    await store.opt_out("wechat:oA")
    await store.opt_out("web:" + "a" * 32)
    assert await store.opted_out_among(["wechat:oA", "wechat:oB", "web:" + "a" * 32]) == {
        "wechat:oA", "web:" + "a" * 32}
    assert await store.opted_out_among([]) == set()
    assert await store.count() == 2


async def test_migrate_moves_both_legacy_stores_once(redis, store_key, legacy_clean):
    await redis.set("pd:optout:wechat:oWECHAT1", "1700000001")
    await redis.set("pd:optout:wechat:oWECHAT2", "1700000002")
    await redis.hset(LEGACY_SMS_KEY, mapping={"13812345678": "1700000003",
                                              "13923456789": "1700000004"})
    store = OptOutStore(redis, store_key)
    await store.opt_out("sms:13923456789", at=1_600_000_000)  # already here: keeps its time

    assert await store.migrate() == 4
    assert await redis.hgetall(store_key) == {
        b"wechat:oWECHAT1": b"1700000001", b"wechat:oWECHAT2": b"1700000002",
        b"sms:13812345678": b"1700000003", b"sms:13923456789": b"1600000000"}
    assert await redis.exists("pd:optout:wechat:oWECHAT1", "pd:optout:wechat:oWECHAT2",
                              LEGACY_SMS_KEY) == 0
    assert await store.migrate() == 0  # idempotent: a second start moves nothing
    assert await store.count() == 4


async def test_migrate_scans_past_many_keys(redis, store_key, legacy_clean):
    for n in range(1200):  # more than one SCAN/HSCAN page
        await redis.set(f"pd:optout:wechat:o{n:05d}", "1700000000")
    await redis.hset(LEGACY_SMS_KEY, mapping={f"138{n:08d}": "1700000000" for n in range(700)})
    store = OptOutStore(redis, store_key)
    assert await store.migrate() == 1900
    assert await store.count() == 1900
    assert await store.is_opted_out("wechat:o01199") and await store.is_opted_out("sms:13800000699")


async def test_a_start_that_finds_nothing_left_marks_the_migration_done(redis, store_key, legacy_clean):
    """Gateway starts scan the keyspace for the legacy stores only until one finds nothing."""
    store = OptOutStore(redis, store_key)
    await redis.set("pd:optout:wechat:oEARLY", "1700000001")
    assert await store.migrate() == 1       # moved; a second scan follows at the next start
    assert await store.migrate() == 0       # found nothing: marked done
    assert await redis.hexists(DONE_KEY, f"optout:{store_key}")
    await redis.set("pd:optout:wechat:oLATE", "1700000002")
    await redis.hset(LEGACY_SMS_KEY, "13800000001", "1700000003")
    assert await store.migrate() == 0       # no scan any more: the late entries stay where they are
    assert await redis.get("pd:optout:wechat:oLATE") == b"1700000002"
    assert await store.count() == 1
    await redis.hdel(DONE_KEY, f"optout:{store_key}")
