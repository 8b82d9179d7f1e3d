"""The Rasa node pool (channels.rasa_nodes) against Rasa REST fakes on loopback that share
their trackers like Rasa nodes on one Redis: affinity, health, failover, exactly-once retry."""
from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import aiohttp
import pytest
from prometheus_client import REGISTRY

from channels.config import ConfigError, GatewayConfig
from channels.keys import RASA_KEY
from channels.messages import Message
from channels.rasa_client import RasaUnavailable
from channels.rasa_nodes import RasaPool, answer_after, rendezvous_score
from channels.router import BUSY_TEXT, ConversationRouter
from fakes.rasa_rest import FakeRasaRest


@pytest.fixture
async def nodes():
    shared: dict = defaultdict(list)
    fakes = [FakeRasaRest(events=shared) for _ in range(3)]
    for fake in fakes:
        await fake.start()
    yield fakes
    for fake in fakes:
        await fake.close()


@pytest.fixture
async def make_pool():
    pools: list[RasaPool] = []

    async def make(urls, **kwargs) -> RasaPool:
        kwargs.setdefault("health_interval_seconds", 0.05)
        pool = RasaPool(urls, kwargs.pop("timeout", 5.0), 1.0, **kwargs)
        await pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


def fake_for(pool: RasaPool, fakes: list[FakeRasaRest], cid: str) -> FakeRasaRest:
    url = pool.ranked(cid)[0].url
    return next(f for f in fakes if f.url == url)


def failovers(outcome: str) -> float:
    return REGISTRY.get_sample_value("powerdesk_gateway_rasa_failovers_total", {"outcome": outcome}) or 0.0


async def wait_for(condition, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


# -- configuration ---------------------------------------------------------------------------

def test_rasa_url_takes_one_or_several_urls():
    assert GatewayConfig.from_env({}).rasa_urls == ("http://127.0.0.1:5005",)
    one = GatewayConfig.from_env({"RASA_URL": "http://10.0.0.5:5005/"})
    assert one.rasa_url == "http://10.0.0.5:5005" and one.rasa_urls == ("http://10.0.0.5:5005",)
    several = GatewayConfig.from_env({"RASA_URL": " http://a:5005, http://b:5006/ ,",
                                      "RASA_HEALTH_INTERVAL_SECONDS": "0.5", "RASA_HEALTH_FALL": "3"})
    assert several.rasa_urls == ("http://a:5005", "http://b:5006")
    assert (several.rasa_health_interval_seconds, several.rasa_health_fall, several.rasa_health_rise) == (0.5, 3, 2)
    assert one.lock_ttl_seconds == one.rasa_timeout_seconds + 5
    # a turn may fail over once: first call + probe, tracker read + a call that may wait out the
    # dead node's ticket in Rasa's lock (TICKET_LOCK_LIFETIME, Rasa's default 60) + probe, tracker read
    assert several.rasa_lock_lifetime_seconds == 60
    assert several.lock_ttl_seconds == 15 + 2 + (15 + 15 + 60 + 2) + 15 + 5
    for bad in ("ftp://a", "http://a:5005,ftp://b", "http://a:5005,http://a:5005/", " , "):
        with pytest.raises(ConfigError, match="RASA_URL"):
            GatewayConfig.from_env({"RASA_URL": bad})


def test_ticket_lock_lifetime_is_read_like_rasa_reads_it():
    def lifetime(raw: str) -> float:
        return GatewayConfig.from_env({"TICKET_LOCK_LIFETIME": raw}).rasa_lock_lifetime_seconds

    assert (lifetime("10"), lifetime(" 25 "), lifetime("0"), lifetime("")) == (10, 25, 60, 60)
    for bad in ("2.5", "-1", "ten"):
        with pytest.raises(ConfigError, match="TICKET_LOCK_LIFETIME"):
            lifetime(bad)
    pool = GatewayConfig.from_env({"RASA_URL": "http://a:5005,http://b:5005,http://c:5005",
                                   "TICKET_LOCK_LIFETIME": "20", "RASA_TIMEOUT_SECONDS": "10"})
    assert pool.lock_ttl_seconds == 10 + 2 + 2 * (10 + 10 + 20 + 2) + 10 + 5  # up to two failovers


# -- affinity ----------------------------------------------------------------------------------

def test_rendezvous_moves_only_the_dead_nodes_conversations():
    pool = RasaPool(["http://n1:5005", "http://n2:5005", "http://n3:5005"], 5.0)
    cids = [f"web:user-{i}" for i in range(600)]
    before = {cid: pool.ranked(cid)[0].url for cid in cids}
    spread = Counter(before.values())
    assert set(spread) == {"http://n1:5005", "http://n2:5005", "http://n3:5005"}
    assert min(spread.values()) > 150  # roughly even
    pool.nodes[1].up = False
    after = {cid: pool.ranked(cid)[0].url for cid in cids}
    moved = [cid for cid in cids if before[cid] != after[cid]]
    assert moved and all(before[cid] == "http://n2:5005" for cid in moved)
    assert "http://n2:5005" not in after.values()
    assert rendezvous_score("http://n1:5005", "web:x") == rendezvous_score("http://n1:5005", "web:x")


async def test_a_conversation_keeps_one_node(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes])
    for cid in ("web:a", "wechat:b", "sms:13800001234"):
        for text in ("你好", "查电费", "谢谢"):
            assert await pool.send(cid, text, {"channel": "web"}) == [{"recipient_id": cid, "text": f"收到：{text}"}]
        holders = [f for f in nodes if f.received.get(cid)]
        assert holders == [fake_for(pool, nodes, cid)] and holders[0].received[cid] == ["你好", "查电费", "谢谢"]


# -- exactly once --------------------------------------------------------------------------------

async def test_every_message_carries_a_fresh_message_id_recorded_in_the_tracker(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes])
    await pool.send("web:ids", "一", {"channel": "web"})
    await pool.send("web:ids", "二", {"channel": "web"})
    calls = [c for f in nodes for c in f.calls if c["sender"] == "web:ids"]
    ids = [c["metadata"]["message_id"] for c in calls]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    assert [c["metadata"]["channel"] for c in calls] == ["web", "web"]
    users = [e for e in nodes[0].events["web:ids"] if e["event"] == "user"]
    assert [e["message_id"] for e in users] == ids


async def test_node_dead_before_the_turn_was_recorded_retries_on_the_next_node(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes], health_interval_seconds=60)
    cid = "web:dies-before"
    first = fake_for(pool, nodes, cid)
    first.crash_next("before_record")
    answer = await pool.send(cid, "查电费")
    assert answer == [{"recipient_id": cid, "text": "收到：查电费"}]
    second = fake_for(pool, nodes, cid)  # the first one is out of rotation now
    assert second is not first and not pool.nodes[nodes.index(first)].up
    assert first.received.get(cid, []) == [] and second.received[cid] == ["查电费"]
    assert [e["event"] for e in first.events[cid]] == ["user", "bot"]  # recorded once, by the retry
    assert first.calls[-1]["metadata"]["message_id"] == second.calls[-1]["metadata"]["message_id"]


async def test_node_dead_after_the_turn_was_recorded_answers_from_the_tracker(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes], health_interval_seconds=60)
    cid = "web:dies-after"
    await pool.send(cid, "你好")
    first = fake_for(pool, nodes, cid)
    first.crash_next("after_record")
    before = failovers("from_tracker")
    answer = await pool.send(cid, "按钮")
    assert failovers("from_tracker") == before + 1
    assert answer == [{"recipient_id": cid, "text": "请问您要查询哪个月的电费？",
                       "buttons": FakeRasaRest.answer_for("按钮")[0]["buttons"]}]
    assert [c["message"] for f in nodes for c in f.calls if c["sender"] == cid] == ["你好", "按钮"]  # never resent
    assert [e["text"] for e in first.events[cid] if e["event"] == "user"] == ["你好", "按钮"]


@pytest.mark.parametrize("knows_the_lifetime", [True, False])
async def test_a_retry_after_a_dead_node_waits_out_its_ticket_in_rasas_lock(make_pool, knows_the_lifetime):
    shared_events: dict = defaultdict(list)
    shared_locks: dict = {}
    fakes = [FakeRasaRest(events=shared_events, locks=shared_locks, lock_lifetime_seconds=1.0) for _ in range(2)]
    for fake in fakes:
        await fake.start()
    try:
        # the usual timeout is shorter than Rasa's lock lifetime, like 15 s against Rasa's 60
        pool = await make_pool([f.url for f in fakes], timeout=0.5, health_interval_seconds=60,
                               lock_lifetime_seconds=1.0 if knows_the_lifetime else 0.0)
        cid = "web:ticket-left"
        first = fake_for(pool, fakes, cid)
        first.crash_next("before_record")  # dies mid-turn holding the conversation's ticket
        second = next(f for f in fakes if f is not first)
        if knows_the_lifetime:
            assert await pool.send(cid, "查电费") == [{"recipient_id": cid, "text": "收到：查电费"}]
            assert [e["text"] for e in shared_events[cid] if e["event"] == "user"] == ["查电费"]
            assert await pool.send(cid, "谢谢") == [{"recipient_id": cid, "text": "收到：谢谢"}]
        else:  # the retry times out in the wait for the lock: the customer gets a busy reply
            with pytest.raises(RasaUnavailable) as caught:
                await pool.send(cid, "查电费")
            assert caught.value.reason == "timeout"
        assert [c["message"] for c in second.calls] == (["查电费", "谢谢"] if knows_the_lifetime else ["查电费"])
        assert second.overlaps == []
    finally:
        for fake in fakes:
            await fake.close()


@pytest.mark.parametrize("knows_the_lifetime", [True, False])
@pytest.mark.parametrize("found_dead_by", ["the call", "the health checks"])
async def test_a_pause_after_a_dead_node_waits_out_its_ticket_in_rasas_lock(make_pool, knows_the_lifetime,
                                                                            found_dead_by):
    """The hand-off's tracker events take Rasa's lock of the conversation like a turn: after
    the conversation's node died holding a ticket, the next node gets the turns' budget."""
    shared_locks: dict = {}
    fakes = [FakeRasaRest(locks=shared_locks, lock_lifetime_seconds=1.0) for _ in range(2)]
    for fake in fakes:
        await fake.start()
    try:
        pool = await make_pool([f.url for f in fakes], timeout=0.5, health_fall=1,
                               health_interval_seconds=0.05 if found_dead_by == "the health checks" else 60,
                               lock_lifetime_seconds=1.0 if knows_the_lifetime else 0.0)
        cid = "wechat:oTicketLeftByADeadNode0001"
        first = fake_for(pool, fakes, cid)
        second = next(f for f in fakes if f is not first)
        await first.close()  # killed mid-turn: its ticket stays in the shared lock until it expires
        shared_locks[cid] = asyncio.get_running_loop().time() + 1.0
        if found_dead_by == "the health checks":
            await wait_for(lambda: not pool.ranked(cid)[0].url == first.url)
        if knows_the_lifetime:
            await pool.pause(cid)
            assert second.paused(cid)
            await pool.resume(cid, {"handoff_requested_at": None})
            assert [e["event"] for e in second.tracker_events[cid]] == ["pause", "resume", "slot"]
        else:  # the usual timeout runs out in the wait for the dead node's ticket
            with pytest.raises(RasaUnavailable) as caught:
                await pool.pause(cid)
            assert caught.value.reason == "timeout"
        assert not next(n for n in pool.nodes if n.url == first.url).up
    finally:
        for fake in fakes:
            await fake.close()


async def test_a_turn_soon_after_the_health_checks_took_its_node_out_waits_out_the_ticket(make_pool):
    shared_locks: dict = {}
    fakes = [FakeRasaRest(locks=shared_locks, lock_lifetime_seconds=1.0) for _ in range(2)]
    for fake in fakes:
        await fake.start()
    try:
        pool = await make_pool([f.url for f in fakes], timeout=0.5, health_fall=1, health_interval_seconds=0.05,
                               lock_lifetime_seconds=1.0)
        cid = "web:ticket-left-found-by-probes"
        first = fake_for(pool, fakes, cid)
        await first.close()
        shared_locks[cid] = asyncio.get_running_loop().time() + 1.0
        await wait_for(lambda: not pool.ranked(cid)[0].url == first.url)
        assert await pool.send(cid, "查电费") == [{"recipient_id": cid, "text": "收到：查电费"}]
    finally:
        for fake in fakes:
            await fake.close()


async def test_a_pause_is_not_resent_after_a_timeout_of_a_live_node(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes], timeout=0.3, health_interval_seconds=60)
    cid = "wechat:oBusyNodeStillAnswering0001"
    first = fake_for(pool, nodes, cid)
    first.locks[cid] = float("inf")  # a turn in progress holds the lock for good
    first.lock_lifetime = 1.0
    with pytest.raises(RasaUnavailable) as caught:
        await pool.pause(cid)
    assert caught.value.reason == "timeout"
    assert all(not f.tracker_events.get(cid) for f in nodes)  # nowhere else either
    assert all(n.up for n in pool.nodes)


async def test_unreadable_tracker_means_no_resend(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes], health_interval_seconds=60)
    cid = "web:unknown"
    first = fake_for(pool, nodes, cid)
    first.crash_next("before_record")
    for other in nodes:
        if other is not first:
            other.fail_status = 503  # the tracker cannot be read anywhere
    with pytest.raises(RasaUnavailable) as caught:
        await pool.send(cid, "在吗")
    assert caught.value.reason == "unknown_outcome"
    assert sum(len([c for c in f.calls if c["sender"] == cid]) for f in nodes) == 1


async def test_slow_but_alive_node_is_never_resent_to(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes], timeout=0.3, health_interval_seconds=60)
    cid = "web:slow"
    with pytest.raises(RasaUnavailable) as caught:
        await pool.send(cid, "慢1")
    assert caught.value.reason == "timeout"
    assert sum(len([c for c in f.calls if c["sender"] == cid]) for f in nodes) == 1
    assert all(n.up for n in pool.nodes)


async def test_a_timeout_whose_probe_times_out_too_is_never_resent(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes], timeout=0.3, health_interval_seconds=60)
    cid = "web:overloaded"
    busy = fake_for(pool, nodes, cid)
    busy.probe_delay_seconds = 1.0  # too busy to answer the probe in time, but alive
    with pytest.raises(RasaUnavailable) as caught:
        await pool.send(cid, "慢0.6")
    assert caught.value.reason == "timeout"
    assert sum(len([c for c in f.calls if c["sender"] == cid]) for f in nodes) == 1
    assert all(n.up for n in pool.nodes)  # a late probe is no proof of death: nothing resent


async def test_a_dropped_connection_to_a_live_node_is_never_resent(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes], health_interval_seconds=60)
    cid = "web:dropped"
    fake_for(pool, nodes, cid).crash_next("drop_connection")
    with pytest.raises(RasaUnavailable) as caught:
        await pool.send(cid, "在吗")
    assert caught.value.reason == "connection"
    assert sum(len([c for c in f.calls if c["sender"] == cid]) for f in nodes) == 1
    assert all(n.up for n in pool.nodes)


async def test_all_nodes_down_still_tries_them(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes[:2]], health_interval_seconds=60)
    for node in pool.nodes:
        node.up = False
    assert await pool.send("web:all-down", "你好") == [{"recipient_id": "web:all-down", "text": "收到：你好"}]


def test_answer_after_takes_the_bot_events_of_our_turn_only():
    events = [{"event": "user", "message_id": "m1"}, {"event": "bot", "text": "一"},
              {"event": "action", "name": "action_listen"},
              {"event": "user", "message_id": "x", "metadata": {"message_id": "m2"}},
              {"event": "bot", "text": "二", "data": {"buttons": [{"title": "是", "payload": "/a"}], "image": None}},
              {"event": "bot", "text": None, "data": {"image": "https://example.com/a.png"}},
              {"event": "user", "message_id": "m3"}, {"event": "bot", "text": "三"}]
    assert answer_after(events, "s", "m1") == [{"recipient_id": "s", "text": "一"}]
    assert answer_after(events, "s", "m2") == [
        {"recipient_id": "s", "text": "二", "buttons": [{"title": "是", "payload": "/a"}]},
        {"recipient_id": "s", "image": "https://example.com/a.png"}]
    assert answer_after(events, "s", "m3") == [{"recipient_id": "s", "text": "三"}]
    assert answer_after(events + [{"event": "user", "message_id": "m4"}], "s", "m4") == []
    assert answer_after(events, "s", "nope") is None


# -- health -------------------------------------------------------------------------------------

async def test_health_checks_take_a_dead_node_out_and_bring_it_back(nodes, make_pool):
    pool = await make_pool([f.url for f in nodes], health_fall=2, health_rise=2)
    victim = nodes[1]
    port = int(victim.url.rsplit(":", 1)[1])
    await victim.close()
    await wait_for(lambda: not pool.nodes[1].up)
    assert [s["up"] for s in pool.status()] == [True, False, True]
    assert REGISTRY.get_sample_value("powerdesk_gateway_rasa_node_up", {"node": victim.url}) == 0
    assert await pool.ping() == (True, "2/3 nodes up")
    for i in range(30):  # nobody is routed to the dead node
        assert (await pool.send(f"web:h{i}", "你好"))[0]["text"] == "收到：你好"
    await victim.start(port)
    await wait_for(lambda: pool.nodes[1].up)
    assert pool.status()[1]["detail"] == "ok"


async def test_router_over_a_pool_answers_once_when_a_node_dies_mid_load(nodes, make_pool, redis):
    pool = await make_pool([f.url for f in nodes], health_interval_seconds=60)
    router = ConversationRouter(pool, redis, lock_wait_seconds=10, lock_ttl_seconds=10)
    users = [f"pool-{i}" for i in range(12)]
    nodes[0].crash_next("after_record")
    nodes[1].crash_next("before_record")

    async def converse(user: str) -> list[str]:
        texts = []
        for n in range(3):
            replies = await router.handle(Message("web", user, f"第{n}条"))
            texts.extend(r.text for r in replies)
        return texts

    results = await asyncio.gather(*(converse(u) for u in users))
    for user, texts in zip(users, results):
        assert texts == ["收到：第0条", "收到：第1条", "收到：第2条"], user
        users_events = [e["text"] for e in nodes[0].events[f"web:{user}"] if e["event"] == "user"]
        assert users_events == ["第0条", "第1条", "第2条"]  # each message processed exactly once
    assert BUSY_TEXT not in sum(results, [])
    assert nodes[0].crashes == nodes[1].crashes == []  # both nodes died mid-turn
    await router.close()


async def test_the_gateway_routes_over_a_pool_and_healthz_reports_its_nodes(nodes, make_web_gateway):
    gw = await make_web_gateway(RASA_URL=",".join(f.url for f in nodes[:2]), RASA_HEALTH_INTERVAL_SECONDS="0.1",
                                TICKET_LOCK_LIFETIME="7")
    assert isinstance(gw.app[RASA_KEY], RasaPool) and gw.app[RASA_KEY].lock_lifetime == 7
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.admin_url + "/healthz") as response:
            assert response.status == 200
            body = await response.json()
        assert body["rasa"]["ok"] and body["rasa"]["detail"] == "2/2 nodes up"
        assert [(n["url"], n["up"]) for n in body["rasa"]["nodes"]] == [(f.url, True) for f in nodes[:2]]
        await nodes[0].close()
        await wait_for(lambda: not gw.app[RASA_KEY].nodes[0].up)
        async with session.get(gw.admin_url + "/healthz") as response:
            body = await response.json()
        assert response.status == 200 and body["rasa"]["detail"] == "1/2 nodes up"
        assert [n["up"] for n in body["rasa"]["nodes"]] == [False, True]
        await nodes[1].close()
        async with session.get(gw.admin_url + "/healthz") as response:
            body = await response.json()
        assert response.status == 503 and body["rasa"] == {"ok": False, "detail": "0/2 nodes up",
                                                           "nodes": body["rasa"]["nodes"]}
