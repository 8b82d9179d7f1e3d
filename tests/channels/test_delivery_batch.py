"""``Deliverer.deliver_notices``: a broadcast's batch gets, notice by notice, what ``deliver``
would give it (opt-out, no channel, quiet hours, rate limits, transactional notices, the
conversation's turn, the last-notice record), with the batch's Redis work shared."""
from __future__ import annotations

import asyncio
import uuid

from channels.messages import DeliveryResult, Notice
from channels.notice_context import notice_key
from integrations.rate_limit import Rate
from tests.channels.delivery_support import NIGHT

OUTAGE = {"area": "幸福小区", "start": "08:00", "end": "18:00", "reason": "检修"}


def cid(name: str, n: int) -> str:
    return f"{name}:u{n}-{uuid.uuid4().hex[:8]}"


async def test_a_batch_gets_what_deliver_gives_each_notice(make_deliverer, recording, redis):
    rec = recording("rec")
    deliverer = make_deliverer(rec)
    ids = [cid("rec", i) for i in range(6)]
    await deliverer.optouts.opt_out(ids[1])
    items = [(ids[0], Notice("outage_notice", OUTAGE, key="bc:c:1")),
             (ids[1], Notice("outage_notice", OUTAGE, key="bc:c:2")),
             ("fax:123", Notice("outage_notice", OUTAGE)),
             (ids[2], Notice("verification_code", {"code": "1234"})),
             (ids[3], Notice("outage_notice", OUTAGE, urgent=True)),
             (ids[4], Notice("outage_notice", OUTAGE))]
    results = await deliverer.deliver_notices(items)
    assert results == [DeliveryResult("sent"), DeliveryResult("skipped", "opted_out"),
                       DeliveryResult("skipped", "no_channel"), DeliveryResult("sent"),
                       DeliveryResult("sent"), DeliveryResult("sent")]
    assert sorted(u for u, _ in rec.calls) == sorted(i.partition(":")[2] for i in
                                                     (ids[0], ids[2], ids[3], ids[4]))
    assert await redis.exists(notice_key(ids[0])) == 1      # the conversation's last notice
    assert await redis.exists(notice_key(ids[1])) == 0
    assert await redis.exists(notice_key(ids[2])) == 0      # transactional: not a notice to answer
    assert await redis.keys("pd:delivery:turn:*") == []     # every turn given back


async def test_quiet_hours_and_rate_limits_as_deliver_decides(make_deliverer, recording, clock):
    rec = recording("rec")
    deliverer = make_deliverer(rec, rate_limits={("rec", "notice"): (Rate(1, 3600),)})
    ids = [cid("rec", i) for i in range(3)]
    assert (await deliverer.deliver_notices([(ids[0], Notice("outage_notice", OUTAGE))]))[0] == \
        DeliveryResult("sent")
    results = await deliverer.deliver_notices([(ids[0], Notice("outage_notice", OUTAGE)),
                                               (ids[1], Notice("outage_notice", OUTAGE))])
    assert results[0].status == "skipped" and results[0].reason == "rate_limited"
    assert results[1] == DeliveryResult("sent")
    clock.now = NIGHT
    quiet = make_deliverer(recording("rec"))
    (held,) = await quiet.deliver_notices([(ids[2], Notice("outage_notice", OUTAGE))])
    assert held.status == "queued" and held.reason == "quiet_hours"


async def test_a_conversation_whose_turn_is_held_waits_for_it(make_deliverer, recording, redis):
    rec = recording("rec")
    rec.delay = 0.3
    deliverer = make_deliverer(rec)
    busy, free = cid("rec", 1), cid("rec", 2)
    first = asyncio.create_task(deliverer.deliver(busy, Notice("outage_notice", OUTAGE), "notice"))
    await asyncio.sleep(0.1)  # its send holds the turn now
    results = await deliverer.deliver_notices([(busy, Notice("bill_due", {})),
                                               (free, Notice("bill_due", {}))])
    assert await first == DeliveryResult("sent") and results == [DeliveryResult("sent")] * 2
    # The free conversation went at once; the busy one's notice waited for the turn.
    assert [u for u, _ in rec.calls] == [busy.partition(":")[2], free.partition(":")[2],
                                         busy.partition(":")[2]]
    assert await rec.sent() == ["outage_notice", "bill_due", "bill_due"]


async def test_an_adapter_failure_is_a_result_not_an_exception(make_deliverer, recording):
    rec = recording("rec")
    rec.answer = RuntimeError("transport broke")
    deliverer = make_deliverer(rec)
    results = await deliverer.deliver_notices([(cid("rec", 1), Notice("outage_notice", OUTAGE))])
    assert results == [DeliveryResult("failed", "error", retry=True)]
