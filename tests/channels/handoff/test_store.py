"""HandoffStore: the state machine, its atomicity across clients and the supervisor figures."""
from __future__ import annotations

import asyncio
from datetime import datetime

from redis.asyncio import Redis

from channels.handoff.store import EVENTS_KEY, HandoffStore, conv_key
from integrations.redis_url import async_client
from tests.channels.handoff.conftest import SH

FIELDS = dict(reason="用户要求人工", channel="web", customer_type="residential", account="3100012345")


async def test_request_is_idempotent_while_open_and_queues_by_time(hredis, hclock):
    store = HandoffStore(hredis, clock=hclock)
    first = await store.request("web:a", queue="general", **FIELDS)
    hclock.now += 5
    again = await store.request("web:a", queue="vip", **FIELDS)
    await store.request("wechat:b", queue="general", **{**FIELDS, "channel": "wechat"})
    assert first["new"] is True and first["state"] == "waiting" and first["queue"] == "general"
    assert again["new"] is False and again["handoff_id"] == first["handoff_id"]
    assert again["queue"] == "general"
    waiting = await store.waiting(["general", "vip"])
    assert [r["cid"] for r in waiting] == ["web:a", "wechat:b"]
    assert waiting[0]["account"] == "3100012345" and waiting[1]["channel"] == "wechat"
    assert await store.waiting(["vip"]) == []


async def test_two_claims_from_two_clients_one_wins(hredis, hclock, handoff_redis_url):
    other = Redis.from_url(handoff_redis_url, decode_responses=True)  # another instance's client
    try:
        store_a, store_b = HandoffStore(hredis, clock=hclock), HandoffStore(other, clock=hclock)
        for i in range(20):
            await store_a.request(f"web:c{i}", queue="general", **FIELDS)
            won = await asyncio.gather(store_a.claim(f"web:c{i}", "alice"),
                                       store_b.claim(f"web:c{i}", "bob"))
            assert sorted(won) == [False, True]
            record = await store_b.get(f"web:c{i}")
            assert record["state"] == "active"
            assert record["agent"] == ("alice" if won[0] else "bob")
        assert await store_a.waiting(["general"]) == []
    finally:
        await other.aclose()


async def test_transfer_close_rating_and_events(hredis, hclock):
    store = HandoffStore(hredis, clock=hclock)
    start = await store.last_event_id()
    record = await store.request("sms:13800001234", queue="general", **FIELDS)
    assert await store.claim("sms:13800001234", "alice")
    assert await store.transfer("sms:13800001234", queue="vip")  # back to waiting, in vip
    assert [r["cid"] for r in await store.waiting(["vip"])] == ["sms:13800001234"]
    assert await store.transfer("sms:13800001234", agent="bob")
    assert (await store.get("sms:13800001234"))["agent"] == "bob"
    msg_id = await store.append_message("sms:13800001234", "customer", "还没来电", None)
    await store.append_message("sms:13800001234", "agent", "正在处理", "bob")
    assert await store.close("sms:13800001234", "bob")
    assert not await store.close("sms:13800001234", "bob")
    assert not await store.claim("sms:13800001234", "carol")
    assert not await store.record_rating("sms:13800001234", "other-id", 5, "")
    assert await store.record_rating("sms:13800001234", record["handoff_id"], 4, "还行")
    assert not await store.record_rating("sms:13800001234", record["handoff_id"], 1, "")
    final = await store.get("sms:13800001234")
    assert final["state"] == "closed" and final["rating"] == "4" and final["rating_comment"] == "还行"
    assert await hredis.ttl(conv_key("sms:13800001234")) > 0
    messages = await store.messages("sms:13800001234")
    assert [(m["sender"], m["text"], m["agent"]) for m in messages] == [
        ("customer", "还没来电", ""), ("agent", "正在处理", "bob")]
    assert messages[0]["id"] == msg_id
    events = await store.events(start, None)
    assert [e["type"] for _, e in events] == ["requested", "claimed", "transferred", "transferred",
                                              "message", "message", "closed", "rated"]
    assert events[-1][1]["score"] == "4" and events[-1][1]["agent"] == "bob"
    # a new request after closing opens a new hand-off
    again = await store.request("sms:13800001234", queue="general", **FIELDS)
    assert again["new"] and again["handoff_id"] != record["handoff_id"]


async def test_events_block_until_another_client_writes(hredis, hclock, handoff_redis_url):
    store = HandoffStore(hredis, clock=hclock)
    writer = HandoffStore(Redis.from_url(handoff_redis_url), clock=hclock)
    tail = asyncio.create_task(store.events("$", 2000))
    await asyncio.sleep(0.05)
    await writer.request("web:x", queue="general", **FIELDS)
    events = await asyncio.wait_for(tail, 3)
    assert [(e["type"], e["cid"]) for _, e in events] == [("requested", "web:x")]


async def test_take_over_and_finish_without_rating(hredis, hclock):
    store = HandoffStore(hredis, clock=hclock)
    record = await store.take_over("web:t", "alice", queue="general", **FIELDS)
    assert record["new"] and record["state"] == "active" and record["agent"] == "alice"
    assert await store.waiting(["general"]) == []
    await store.request("web:w", queue="general", **FIELDS)
    claimed = await store.take_over("web:w", "bob", queue="general", **FIELDS)
    assert claimed["state"] == "active" and claimed["agent"] == "bob" and not claimed["new"]
    assert await store.close("web:t", "alice")
    assert await store.finish("web:t")
    assert (await store.get("web:t"))["state"] == "closed"
    assert await store.mark_once("web:w", "ack") and not await store.mark_once("web:w", "ack")


async def test_stats_of_the_day(hredis, hclock):
    store = HandoffStore(hredis, clock=hclock)
    nine = datetime(2026, 11, 27, 9, 10, tzinfo=SH).timestamp()
    hclock.now = nine
    for cid in ("web:1", "web:2", "web:3", "web:4", "web:5", "web:6"):
        await store.route_state(cid)
    await store.request("web:1", queue="general", **FIELDS)
    await store.request("web:2", queue="vip", **FIELDS)
    hclock.now = nine + 3600
    await store.request("web:3", queue="general", **FIELDS)
    hclock.now += 60
    assert await store.claim("web:1", "alice")
    await store.close("web:1", "alice")
    await store.record_rating("web:1", (await store.get("web:1"))["handoff_id"], 5, "")
    await store.claim("web:3", "alice")
    await store.close("web:3", "alice")
    await store.record_rating("web:3", (await store.get("web:3"))["handoff_id"], 2, "慢")
    stats = await store.stats()
    assert stats["day"] == "2026-11-27"
    assert stats["per_hour"][9] == 2 and stats["per_hour"][10] == 1 and sum(stats["per_hour"]) == 3
    assert stats["queues"]["vip"] == {"waiting": 1, "oldest_wait_seconds": 3660.0,
                                      "average_wait_seconds": 3660.0}
    assert stats["queues"]["general"]["waiting"] == 0
    assert stats["ratings"]["agents"]["alice"] == {
        "count": 2, "average": 3.5, "distribution": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}}
    assert stats["ratings"]["queues"]["general"]["count"] == 2
    assert stats["claims"] == 2 and stats["average_claim_wait_seconds"] == 1860.0
    assert stats["containment"] == {"conversations": 6, "handed_off": 3, "contained": 3, "rate": 0.5}
    assert (await store.stats("2026-11-26"))["requests"] == 0
    assert await hredis.xlen(EVENTS_KEY) > 0


async def test_active_index_follows_claims_transfers_and_closes(hredis, hclock):
    store = HandoffStore(hredis, clock=hclock)
    for cid in ("web:p", "web:q", "web:r"):
        await store.request(cid, queue="general", **FIELDS)
    await store.claim("web:q", "alice")
    hclock.now += 1
    await store.claim("web:p", "alice")
    await store.take_over("web:s", "bob", queue="vip", **FIELDS)
    assert [r["cid"] for r in await store.active("alice")] == ["web:q", "web:p"]
    assert [r["cid"] for r in await store.active()] == ["web:q", "web:p", "web:s"]
    await store.transfer("web:q", agent="bob")
    await store.transfer("web:p", queue="vip")
    await store.close("web:s", "bob")
    await store.cancel("web:r", "callback")
    assert [r["cid"] for r in await store.active("bob")] == ["web:q"]
    assert await store.active("alice") == []
    assert [r["cid"] for r in await store.waiting(["general", "vip"])] == ["web:p"]
    assert (await store.get("web:r"))["state"] == "closed"
    assert await store.overdue(["general", "vip"], 0) == ["web:p"]


async def test_every_transition_runs_on_a_redis_cluster(redis_cluster_url, hclock):
    cluster = async_client(redis_cluster_url, decode_responses=True)
    try:
        store = HandoffStore(cluster, clock=hclock)
        cid = f"web:cluster-{hclock.now}"
        record = await store.request(cid, queue="general", **FIELDS)
        assert record["new"] is True and cid in [r["cid"] for r in await store.waiting(["general"])]
        assert await store.claim(cid, "alice")
        assert await store.transfer(cid, queue="vip") and await store.transfer(cid, agent="bob")
        await store.append_message(cid, "customer", "还没来电", None)
        assert await store.close(cid, "bob")
        assert await store.record_rating(cid, record["handoff_id"], 5, "好")
        final = await store.get(cid)
        assert final["state"] == "closed" and final["rating"] == "5"
        assert [m["text"] for m in await store.messages(cid)] == ["还没来电"]
        stats = await store.stats()  # PFCOUNT, which a Cluster pipeline refuses, goes alone
        assert stats["containment"]["handed_off"] >= 1, stats
    finally:
        await cluster.aclose()


async def test_keys_of_the_names_before_the_hash_tag_move_on_start(hredis, hclock):
    await hredis.hset("pd:handoff:conv:web:old", mapping={"state": "waiting", "queue": "general",
                                                          "handoff_id": "h1", "created_at": "1"})
    await hredis.zadd("pd:handoff:queue:general", {"web:old": 1})
    await hredis.sadd("pd:handoff:queues", "general")
    await hredis.hset("pd:handoff:conv:web:closed", mapping={"state": "closed"})
    await hredis.expire("pd:handoff:conv:web:closed", 600)
    await hredis.xadd("pd:handoff:requests", {"cid": "web:new"})  # the actions' stream stays
    store = HandoffStore(hredis, clock=hclock)
    assert await store.migrate_legacy_keys() == 4
    assert await store.migrate_legacy_keys() == 0
    assert [r["cid"] for r in await store.waiting(["general"])] == ["web:old"]
    assert 0 < await hredis.ttl(conv_key("web:closed")) <= 600
    assert await hredis.exists("pd:handoff:requests") == 1
    assert await hredis.keys("pd:handoff:*") == [b"pd:handoff:requests"]
