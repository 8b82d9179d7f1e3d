"""The reverse index of bindings (account → bound conversations) against a real Redis: kept by
bind/unbind, verified when read, and the one-time migration of older bindings."""
from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from integrations.customer_store import BINDING_INDEX_MARKER, CustomerStore, VerificationLimits
from tests.support.redis_db import BINDING_INDEX_DB, redis_database


async def _close(client) -> None:
    await (client.aclose() if hasattr(client, "aclose") else client.close())


@pytest.fixture(params=[True, False], ids=["decoded", "bytes"])
async def client(redis_url: str, request):
    redis = aioredis.Redis.from_url(redis_database(redis_url, BINDING_INDEX_DB), decode_responses=request.param)
    yield redis
    await _close(redis)


@pytest.fixture
def store(client) -> CustomerStore:
    return CustomerStore(client)


def _account() -> str:
    return "3" + str(uuid.uuid4().int)[:9]


def _cid(channel: str) -> str:
    return f"{channel}:{uuid.uuid4().hex}"


async def test_bind_and_unbind_keep_the_index(store: CustomerStore):
    account, other = _account(), _account()
    wechat, sms, web = _cid("wechat"), _cid("sms"), _cid("web")
    for cid in (wechat, sms, web):
        await store.bind(cid, account)
    assert await store.bound_conversations(account) == sorted([wechat, sms, web])
    await store.bind(sms, other)  # moves to another 户号
    assert await store.bound_conversations(account) == sorted([wechat, web])
    assert await store.bound_conversations(other) == [sms]
    assert await store.unbind(wechat) == account
    assert await store.bound_conversations(account) == [web]
    nobody = _account()
    assert await store.bound_conversations_of([account, other, nobody]) == {
        account: [web], other: [sms], nobody: []}


async def test_many_accounts_at_once(store: CustomerStore):
    accounts = [_account() for _ in range(5)]
    expected = {}
    for i, account in enumerate(accounts):
        expected[account] = sorted(_cid("wechat") for _ in range(i))
        for cid in expected[account]:
            await store.bind(cid, account)
    assert await store.bound_conversations_of(accounts) == expected


async def test_stale_members_are_dropped_when_read(store: CustomerStore, client):
    account = _account()
    expired, moved, kept = _cid("web"), _cid("wechat"), _cid("sms")
    for cid in (expired, moved, kept):
        await store.bind(cid, account)
    await client.delete(CustomerStore._binding_key(expired))  # the idle TTL ran out
    await client.set(CustomerStore._binding_key(moved), _account())  # written around bind()
    assert await store.bound_conversations(account) == [kept]
    members = await client.smembers(CustomerStore._account_bindings_key(account))
    assert {m.decode() if isinstance(m, bytes) else m for m in members} == {kept}


async def test_reading_does_not_renew_a_web_binding(client):
    store = CustomerStore(client, VerificationLimits(web_idle_seconds=100))
    account, web = _account(), _cid("web")
    await store.bind(web, account)
    await client.expire(CustomerStore._binding_key(web), 5)
    assert await store.bound_conversations(account) == [web]
    assert 0 < await client.ttl(CustomerStore._binding_key(web)) <= 5


async def test_a_member_rebound_while_pruned_stays(store: CustomerStore, client):
    """bind() writes the binding, then the index. If the index entry is missing but the binding
    says this account (a bind in flight), reading keeps it."""
    account, cid = _account(), _cid("wechat")
    await client.sadd(CustomerStore._account_bindings_key(account), cid)
    # The binding is checked once (stale: absent), then a bind lands before the re-check.
    real_pipeline = client.pipeline
    calls = {"n": 0}

    def pipeline(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the pruning round trip: the bind happens just before it
            return _BindFirst(real_pipeline(*args, **kwargs), client, cid, account)
        return real_pipeline(*args, **kwargs)

    client.pipeline = pipeline
    try:
        assert await store.bound_conversations(account) == [cid]
    finally:
        del client.pipeline
    members = await client.smembers(CustomerStore._account_bindings_key(account))
    assert len(members) == 1


class _BindFirst:
    """A pipeline whose execute() first lets a concurrent bind write the binding."""

    def __init__(self, pipe, client, cid, account) -> None:
        self._pipe, self._client, self._cid, self._account = pipe, client, cid, account

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    async def execute(self):
        await self._client.set(CustomerStore._binding_key(self._cid), self._account)
        return await self._pipe.execute()


async def test_one_time_migration_of_older_bindings(store: CustomerStore, client):
    await client.delete(BINDING_INDEX_MARKER)
    account = _account()
    older = [_cid("wechat") for _ in range(2500)]
    pipe = client.pipeline(transaction=False)
    for cid in older:  # bindings written before the index existed
        pipe.set(CustomerStore._binding_key(cid), account)
    await pipe.execute()
    assert await store.bound_conversations(account) == []
    indexed = await store.ensure_binding_index(scan_count=500)
    assert indexed >= 2500
    assert await store.bound_conversations(account) == sorted(older)
    assert await client.exists(BINDING_INDEX_MARKER)
    # Later starts find the marker and do not scan again.
    late = _cid("sms")
    await client.set(CustomerStore._binding_key(late), account)
    assert await store.ensure_binding_index() == 0
    assert late not in await store.bound_conversations(account)


async def test_a_page_of_accounts_reads_subscribers_and_bindings_at_once(store: CustomerStore, client):
    """reachable_of_many: the subscribers of a kind plus (for outages) the bound conversations,
    one Lua call per page, pruning the same stale members as the two methods it replaces."""
    a, b, nobody = _account(), _account(), _account()
    wechat, sms, web, gone, moved = _cid("wechat"), _cid("sms"), _cid("web"), _cid("web"), _cid("sms")
    await store.bind(wechat, a)
    await store.subscribe_reminder(wechat, a, ["outage"])
    await store.subscribe_reminder(sms, a, ["bill_due"])  # subscribed, not bound
    await store.bind(web, b)
    await store.bind(moved, b)
    await client.set(CustomerStore._binding_key(moved), _account())  # moved to another 户号
    await store.subscribe_reminder(gone, b, ["outage"])
    await client.delete(CustomerStore._subs_key(gone))  # its subscriptions expired (idle)

    assert await store.reachable_of_many([a, b, nobody], "outage", bound=True) == {
        a: [wechat], b: [web], nobody: []}
    assert await store.reachable_of_many([a, b], "bill_due") == {a: [sms], b: []}
    assert await store.reachable_of_many([a, b], "outage") == {a: [wechat], b: []}
    # the stale members were dropped from the indexes, the live ones kept
    def texts(members):
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    assert texts(await client.smembers(CustomerStore._account_bindings_key(b))) == {web}
    assert texts(await client.smembers(CustomerStore._subscribers_key(b, "outage"))) == set()
    assert texts(await client.smembers(CustomerStore._subscribers_key(a, "outage"))) == {wechat}
    # the same answer as the pipelined methods (the path a Redis Cluster takes)
    union = await store.subscribers_of_many([a, b, nobody], "outage")
    for account, cids in (await store.bound_conversations_of([a, b, nobody])).items():
        union[account] = sorted(set(union[account]) | set(cids))
    assert union == await store.reachable_of_many([a, b, nobody], "outage", bound=True)
