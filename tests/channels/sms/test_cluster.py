"""The SMS channel on a real 3-master Redis Cluster (Debian's redis-server, the session's
``redis_cluster_url``): the gateway app (create_app) with REDIS_URL=redis+cluster://..., the fake
Rasa and the loopback Aliyun fake. A conversation's answer, a broadcast's batch of keyed notices
and a held message go through the outbox to the provider, and delivery reports come back; the
outbox's keys from before the ``{sms}`` hash tag move at the gateway's start."""
from __future__ import annotations

import asyncio
import random

import pytest

from channels.key_migration import DONE_KEY
from channels.keys import DELIVERER_KEY
from channels.messages import Notice
from channels.sms.outbox import QUEUE_KEY, keyed_id, migrate_legacy_keys
from channels.notice_reports import REPORTS_STREAM
from fakes.aliyun_sms import report_items, up_item
from integrations.redis_url import async_client

ACK = (200, {"code": 0, "msg": "成功"})
OUTAGE = {"area": "钟灵街社区", "start": "9:00", "end": "17:00", "reason": "检修"}


@pytest.fixture
def redis_url(redis_cluster_url: str) -> str:
    """The SMS fixtures (make_gateway) on the cluster instead of the embedded one-server Redis."""
    return redis_cluster_url


@pytest.fixture
async def cluster(redis_cluster_url: str):
    client = async_client(redis_cluster_url, decode_responses=True)
    yield client
    await client.aclose()


def a_phone() -> str:
    return f"1{random.choice('3456789')}{random.randrange(10**9):09d}"


async def until_state(outbox, msg_id: str, state: str) -> dict[str, str]:
    for _ in range(100):
        msg = await outbox.get(msg_id)
        if msg.get("state") == state:
            return msg
        await asyncio.sleep(0.1)
    raise AssertionError(f"{msg_id}: {msg}")


async def test_answers_notices_and_reports_through_the_outbox_on_a_cluster(make_gateway, cluster, phone):
    gw = await make_gateway("aliyun", DELIVERY_QUIET_HOURS="off", DELIVERY_RATE_LIMITS="sms.notice=off")
    outbox = gw.runtime().outbox

    # A customer's SMS is answered through the outbox; its delivery report marks it delivered.
    assert await gw.post("/sms/aliyun/up", [up_item(phone, "你好", 31001)]) == ACK
    await gw.settle()
    assert gw.texts(phone) == ["收到：你好"]
    answer = gw.fake.sent[-1]["out_id"]
    assert (await outbox.get(answer))["state"] == "sent"
    assert await gw.post("/sms/aliyun/report", report_items(gw.fake.sent[-1:])) == ACK
    assert (await outbox.get(answer))["state"] == "delivered"

    # A broadcast's batch of keyed notices through the deliverer: stored, gated (rate-limit
    # scripts pipelined) and sent in one SendBatchSms; the reports reach the messages and the broadcast's report stream.
    phones = [a_phone() for _ in range(3)]
    notices = [(p, Notice("outage_notice", OUTAGE, key=f"bc:cluster-test:{p}")) for p in phones]
    before = len(gw.fake.sent)
    deliverer = gw.apps[0][DELIVERER_KEY]  # its conversations' turns are taken and given back pipelined
    results = await deliverer.deliver_notices([(f"sms:{p}", notice) for p, notice in notices])
    assert [r.status for r in results] == ["sent"] * 3, results
    batch = gw.fake.sent[before:]
    assert sorted(s["phone"] for s in batch) == sorted(phones)
    assert len({s["out_id"] for s in batch}) == 1  # one provider call, one batch reference
    again = await gw.runtime().channel.adapter.send_notices(notices)  # the same keys: nothing sent
    assert [r.status for r in again] == ["sent"] * 3 and len(gw.fake.sent) == before + 3
    assert await gw.post("/sms/aliyun/report", report_items(batch)) == ACK
    for p, notice in notices:
        assert (await outbox.get(keyed_id(notice.key, p)))["state"] == "delivered"
    reported = {fields["key"] for _id, fields in await cluster.xrevrange(REPORTS_STREAM, count=20)}
    assert {notice.key for _p, notice in notices} <= reported

    # Provider flow control: the answer waits in the queue and a worker's take sends it later.
    gw.fake.throttle_next()
    assert await gw.post("/sms/aliyun/up", [up_item(phone, "还在吗", 31002)]) == ACK
    await gw.settle()
    (held,) = [m for m in await cluster.zrange(QUEUE_KEY, 0, -1)
               if (await outbox.get(m)).get("phone") == phone]
    await cluster.zadd(QUEUE_KEY, {held: 0})  # its time has come
    await outbox.run_due()
    await until_state(outbox, held, "sent")
    assert gw.texts(phone) == ["收到：你好", "收到：还在吗"]

    # Every key of the outbox is on one slot (its scripts and transactions need that).
    slots = {await cluster.cluster_keyslot(key) for key in (
        QUEUE_KEY, f"pd:{{sms}}:msg:{answer}", f"pd:{{sms}}:pid:aliyun:{batch[0]['biz_id']}:{batch[0]['phone']}")}
    assert len(slots) == 1


async def test_outbox_keys_of_earlier_names_move_at_the_gateway_start(make_gateway, cluster, phone):
    """An SMS queued by the release before the hash tag (its hash, its queue entry on another
    slot) is moved at start and sent by the new outbox's worker; a number's rate-limit counter
    under pd:sms:rl:{<phone>} is left where it is. A later start finds nothing and marks the
    migration done, so the next one does not scan."""
    msg_id = "legacy" + phone
    legacy = {"id": msg_id, "key": "", "phone": phone, "kind": "generic_reply",
              "template_id": "SMS_900000001", "params": '{"content": "早先排队的短信"}',
              "text": "早先排队的短信", "segments": "1", "class": "reply", "urgent": "0",
              "conversation_id": f"sms:{phone}", "state": "queued", "attempts": "0",
              "created_at": "0", "updated_at": "0", "expires_at": "9999999999"}
    await cluster.hset(f"pd:sms:msg:{msg_id}", mapping=legacy)
    await cluster.expire(f"pd:sms:msg:{msg_id}", 3600)
    await cluster.zadd("pd:sms:outbox", {msg_id: 0})
    await cluster.set(f"pd:sms:rl:{{{phone}}}:reply:3600:0", "1")
    await cluster.hdel(DONE_KEY, f"sms-outbox:{QUEUE_KEY}")  # earlier tests' starts marked it

    gw = await make_gateway("aliyun")
    outbox = gw.runtime().outbox
    await outbox.run_due()
    moved = await until_state(outbox, msg_id, "sent")
    assert moved["text"] == "早先排队的短信" and gw.texts(phone) == ["早先排队的短信"]
    assert 0 < await cluster.ttl(f"pd:{{sms}}:msg:{msg_id}")
    assert not await cluster.exists(f"pd:sms:msg:{msg_id}")
    assert not await cluster.exists("pd:sms:outbox")
    assert await cluster.get(f"pd:sms:rl:{{{phone}}}:reply:3600:0") == "1"

    assert await migrate_legacy_keys(cluster) == 0  # nothing left: marked done
    assert await cluster.hexists(DONE_KEY, f"sms-outbox:{QUEUE_KEY}")
    await cluster.zadd("pd:sms:outbox", {"stray": 0})
    assert await migrate_legacy_keys(cluster) == 0  # no scan any more
    assert await cluster.zscore("pd:sms:outbox", "stray") == 0
    await cluster.delete("pd:sms:outbox", f"pd:sms:rl:{{{phone}}}:reply:3600:0")
