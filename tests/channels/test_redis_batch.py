"""``channels.redis_batch.KeyOps``: the same answers and effects on one Redis server (one script
call) and on a real 3-master Redis Cluster (a pipeline routed key by key); and the users of it on
the Cluster: a broadcast batch through the Deliverer (turns, last-notice records) and WeChat's
keyed-notice records (the record and the msgid → key map live in different slots)."""
from __future__ import annotations

import secrets

import pytest
from redis.exceptions import RedisError

from channels.messages import Notice
from channels.notice_context import decode_notice, notice_key
from channels.redis_batch import KeyOps, is_cluster
from channels.wechat.adapter import WeChatAdapter, notice_record_key, template_notice_key
from channels.wechat.api import WeChatApi
from channels.wechat.config import WeChatConfig
from fakes.wechat_api import FakeWeChatApi
from integrations.redis_url import async_client
from tests.channels.wechat.test_adapter import NOW, OUTAGE, TEMPLATES, openid


@pytest.fixture(params=["server", "cluster"])
async def client(request, redis_url):
    """A client of one Redis server, or of the session's Redis Cluster."""
    url = request.getfixturevalue("redis_cluster_url") if request.param == "cluster" else redis_url
    redis = async_client(url)
    yield redis
    await redis.aclose()


def tag() -> str:
    return secrets.token_hex(4)


async def test_each_operation_answers_and_acts_as_its_command(client):
    t = tag()
    await client.set(f"t:{t}:taken", "someone", px=60_000)
    await client.set(f"t:{t}:mine", "me", px=60_000)
    await client.set(f"t:{t}:theirs", "them", px=60_000)
    await client.hset(f"t:{t}:h", mapping={"state": "sent", "via": "template"})
    ops = KeyOps()
    answers = {
        "new": ops.set(f"t:{t}:new", "v1", px=30_000, nx=True),
        "taken": ops.set(f"t:{t}:taken", "v2", px=30_000, nx=True),
        "plain": ops.set(f"t:{t}:plain", "v3"),
        "mine": ops.delete_if(f"t:{t}:mine", "me"),
        "theirs": ops.delete_if(f"t:{t}:theirs", "me"),
        "h": ops.hgetall(f"t:{t}:h"),
        "none": ops.hgetall(f"t:{t}:none"),
        "w": ops.hset_expire(f"t:{t}:w", {"state": "sent", "msgid": "42"}, 3600),
    }
    assert len(ops) == len(answers)
    got = await ops.run(client)
    result = {name: got[index] for name, index in answers.items()}
    assert result == {"new": True, "taken": False, "plain": True, "mine": None, "theirs": None,
                      "h": {"state": "sent", "via": "template"}, "none": {}, "w": None}
    assert await client.get(f"t:{t}:new") == b"v1" and 0 < await client.pttl(f"t:{t}:new") <= 30_000
    assert await client.get(f"t:{t}:taken") == b"someone"  # NX: kept
    assert await client.pttl(f"t:{t}:plain") == -1
    assert not await client.exists(f"t:{t}:mine")  # held our token: given back
    assert await client.get(f"t:{t}:theirs") == b"them"  # someone else's: kept
    assert await client.hgetall(f"t:{t}:w") == {b"state": b"sent", b"msgid": b"42"}
    assert 3500 < await client.ttl(f"t:{t}:w") <= 3600
    assert await KeyOps().run(client) == []
    with pytest.raises(ValueError):
        KeyOps().hset_expire(f"t:{t}:empty", {}, 60)


async def test_values_keep_their_text(client):
    # Quotes, backslashes, non-ASCII and JSON inside values (a notice record is JSON) arrive as given.
    t = tag()
    value = '{"kind":"outage_notice","params":{"area":"幸福小区 \\ \"东门\""}}\u2028末尾'
    ops = KeyOps()
    ops.set(f"t:{t}:v", value, px=60_000)
    ops.hset_expire(f"t:{t}:w", {"字段": value, "n": "1"}, 60)
    read = ops.hgetall(f"t:{t}:w")
    assert (await ops.run(client))[read] == {"字段": value, "n": "1"}
    assert (await client.get(f"t:{t}:v")).decode() == value


async def test_the_cluster_gets_a_pipeline_and_one_server_one_script(redis_url, redis_cluster_url):
    server, cluster = async_client(redis_url), async_client(redis_cluster_url)
    try:
        assert not is_cluster(server) and is_cluster(cluster)
        # Keys in many slots: one multi-key script would be refused (CROSSSLOT) on the cluster.
        keys = [f"spread:{tag()}:{n}" for n in range(20)]
        assert len({await cluster.cluster_keyslot(k) for k in keys}) > 1
        for redis in (server, cluster):
            ops = KeyOps()
            for k in keys:
                ops.set(k, "x", px=60_000, nx=True)
            assert await ops.run(redis) == [True] * len(keys)
        before = (await server.info("commandstats"))["cmdstat_evalsha"]["calls"]
        ops = KeyOps()
        for k in keys:
            ops.delete_if(k, "x")
        await ops.run(server)
        assert (await server.info("commandstats"))["cmdstat_evalsha"]["calls"] == before + 1
        assert not await server.exists(*keys)
    finally:
        await server.aclose()
        await cluster.aclose()


async def test_a_failing_operation_fails_the_call(client):
    t = tag()
    await client.set(f"t:{t}:string", "x")
    ops = KeyOps()
    ops.hgetall(f"t:{t}:string")  # WRONGTYPE
    with pytest.raises(RedisError):
        await ops.run(client)


@pytest.fixture
async def wechat_api():
    fake = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def cluster(redis_cluster_url):
    redis = async_client(redis_cluster_url)
    yield redis
    await redis.aclose()


async def test_wechat_keyed_records_on_a_cluster(cluster, wechat_api):
    # The record (by openid and key) and the msgid → key map (by msgid) are in different slots:
    # written without a transaction, each write one key; a repeat is answered from the record.
    api = WeChatApi(wechat_api.base_url, wechat_api.app_id, wechat_api.app_secret, cluster,
                    retry_delays=())
    adapter = WeChatAdapter(WeChatConfig(templates=TEMPLATES), cluster, api, clock=lambda: NOW)
    try:
        users = [openid() for _ in range(5)]
        campaign = f"bc:outage:C{tag()}"
        items = [(u, Notice("outage_notice", OUTAGE, key=f"{campaign}:{n}")) for n, u in enumerate(users)]
        assert [r.status for r in await adapter.send_notices(items)] == ["sent"] * 5
        single = (openid(), Notice("outage_notice", OUTAGE, key=f"{campaign}:single"))
        assert (await adapter.send(*single, "notice")).status == "sent"
        for (user, notice) in [*items, single]:
            record = await cluster.hgetall(notice_record_key(user, notice.key))
            assert record[b"state"] == b"sent" and record[b"via"] == b"template"
            assert 0 < await cluster.ttl(notice_record_key(user, notice.key))
            assert await cluster.get(template_notice_key(int(record[b"msgid"]))) == notice.key.encode()
        again = await adapter.send_notices(items)
        assert [(r.status, r.reason) for r in again] == [("sent", "duplicate")] * 5
        assert len(wechat_api.templates) == 6
    finally:
        await api.close()


async def test_a_broadcast_batch_through_the_deliverer_on_a_cluster(cluster, wechat_api):
    from channels.delivery import Deliverer
    from channels.optout import OptOutStore
    from channels.quiet_hours import QuietHours

    deliverer = Deliverer(cluster, OptOutStore(cluster), QuietHours(None))
    api = WeChatApi(wechat_api.base_url, wechat_api.app_id, wechat_api.app_secret, cluster,
                    retry_delays=())
    deliverer.register(WeChatAdapter(WeChatConfig(templates=TEMPLATES), cluster, api))
    try:
        users = [openid() for _ in range(6)]
        campaign = f"bc:outage:D{tag()}"
        items = [(f"wechat:{u}", Notice("outage_notice", OUTAGE, key=f"{campaign}:{n}"))
                 for n, u in enumerate(users)]
        results = await deliverer.deliver_notices(items)
        assert [r.status for r in results] == ["sent"] * 6
        for conversation_id, notice in items:
            assert (decode_notice(await cluster.get(notice_key(conversation_id))) or {})["key"] == notice.key
            assert not await cluster.exists(f"pd:delivery:turn:{conversation_id}")  # given back
        assert len(wechat_api.templates) == 6
    finally:
        await api.close()
