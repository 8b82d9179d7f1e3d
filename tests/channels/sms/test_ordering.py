"""Inbound SMS are answered one at a time per number, in order, across gateway instances, and a
turn cut short on one instance is answered by another (the SMS dispatcher, pd:sms:dispatch).

Two real gateways (create_app) share the session's real Redis; the provider fakes receive the
answers; the Rasa side is the labelled fake of Rasa's REST contract.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from channels.router import BUSY_TEXT
from fakes.aliyun_sms import up_item
from fakes.tencent_sms import reply_item


def uplink(provider: str, phone: str, text: str, index: int) -> list[dict]:
    if provider == "aliyun":
        return [up_item(phone, text, 30001 + index, send_time=f"2026-11-23 10:00:{index:02d}")]
    return [reply_item(phone, text, when=1795406400 + index)]


async def wait_until(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_a_numbers_messages_to_alternating_instances_are_answered_in_order(
        make_gateway, phone, provider):
    gw = await make_gateway(provider, count=2)
    gw.rasa.jitter = 0.05  # Rasa's answers take varying time, as they do
    texts = ["慢0.3"] + [f"第{i}条" for i in range(1, 8)]
    for index, text in enumerate(texts):
        # The provider's pushes land on either instance; each is acknowledged once queued.
        status, _ = await gw.post(f"/sms/{provider}/up", uplink(provider, phone, text, index),
                                  index=index % 2)
        assert status == 200
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == texts
    assert f"sms:{phone}" not in gw.rasa.overlaps
    await wait_until(lambda: len(gw.texts(phone)) == len(texts), "the answers")
    assert gw.texts(phone) == [f"收到：{text}" for text in texts]


async def test_a_turn_cut_short_by_a_stopping_instance_is_answered_by_the_other(make_gateway,
                                                                                  phone):
    gw = await make_gateway("aliyun", count=2)
    assert (await gw.post("/sms/aliyun/up", uplink("aliyun", phone, "慢5", 0)))[0] == 200
    assert (await gw.post("/sms/aliyun/up", uplink("aliyun", phone, "第二条", 1), index=1))[0] == 200
    await wait_until(lambda: any(c["sender"] == f"sms:{phone}" for c in gw.rasa.calls),
                     "the first turn to reach Rasa")
    (working,) = [i for i in (0, 1) if gw.runtime(i).dispatcher._draining]
    # The instance is stopped with no grace left (a deploy whose grace ran out): its turn is
    # cancelled mid-way and the number handed to the other instance.
    await gw.runtime(working).dispatcher.stop(grace_seconds=0)
    await gw.settle()
    await wait_until(lambda: len(gw.texts(phone)) == 2, "the busy reply and the next answer")
    # The cut-short message is not run again (Rasa may have acted on it): the customer is asked
    # to send it again, and the next message is answered as usual, after it.
    assert gw.texts(phone) == [BUSY_TEXT, "收到：第二条"]
    assert [c["message"] for c in gw.rasa.calls if c["sender"] == f"sms:{phone}"] == ["慢5", "第二条"]


async def test_a_turn_that_times_out_gets_the_busy_reply_and_the_queue_goes_on(make_gateway, phone):
    gw = await make_gateway("aliyun", SMS_JOB_TIMEOUT_SECONDS="1")
    await gw.post("/sms/aliyun/up", uplink("aliyun", phone, "慢3", 0))
    await gw.post("/sms/aliyun/up", uplink("aliyun", phone, "第二条", 1))
    await gw.settle()
    await wait_until(lambda: len(gw.texts(phone)) == 2, "the busy reply and the next answer")
    assert gw.texts(phone) == [BUSY_TEXT, "收到：第二条"]
