"""The SMS channel inside the real gateway app (create_app), on loopback.

Provider side: the Aliyun / Tencent fakes (signatures verified) receive what we send; tests post
the providers' callbacks to our four paths. Assistant side: a FAKE of Rasa's REST webhook contract
(fakes/rasa_rest.py — canned answers, not Rasa); the real assistant is used in
test_e2e_sms.py (marker e2e). Redis is the session's real server, shared by two gateway instances.
"""
from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from channels.messages import Notice
from tests.channels.sms.conftest import SIGN
from fakes.aliyun_sms import report_items, up_item
from fakes.tencent_sms import reply_item, report_items as tencent_report_items


async def test_aliyun_uplink_becomes_a_conversation_answered_by_sms(make_gateway, phone):
    gw = await make_gateway("aliyun")
    status, body = await gw.post("/sms/aliyun/up", [up_item(f"86{phone}", "你好", 1001)])
    assert (status, body) == (200, {"code": 0, "msg": "成功"})
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == ["你好"]
    assert gw.texts(phone) == ["收到：你好"]
    assert gw.fake.sent[-1]["template"] == "SMS_900000001" and gw.fake.sent[-1]["sign_name"] == SIGN


async def test_tencent_reply_callback_becomes_a_conversation(make_gateway, phone):
    gw = await make_gateway("tencent")
    status, body = await gw.post("/sms/tencent/up", reply_item(phone, "停电了吗"))
    assert (status, body) == (200, {"result": 0, "errmsg": "OK"})
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == ["停电了吗"]
    assert gw.texts(phone) == ["收到：停电了吗"]


async def test_buttons_become_numbered_options_and_a_digit_selects(make_gateway, phone):
    gw = await make_gateway("aliyun")
    await gw.post("/sms/aliyun/up", [up_item(phone, "/query_bill", 2001)])
    await gw.settle()
    (question,) = gw.texts(phone)
    assert "回复1 本月" in question and "回复2 上个月" in question
    await gw.post("/sms/aliyun/up", [up_item(phone, "２", 2002)])  # full-width digit
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"][-1] == '/inform{"month":"上个月"}'
    # The options are used once: a later "1" is just text.
    await gw.post("/sms/aliyun/up", [up_item(phone, "1", 2003)])
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"][-1] == "1"
    # A newer answer without options forgets the older question's options.
    await gw.post("/sms/aliyun/up", [up_item(phone, "/query_bill", 2004)])
    await gw.post("/sms/aliyun/up", [up_item(phone, "谢谢", 2005)])
    await gw.post("/sms/aliyun/up", [up_item(phone, "1", 2006)])
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"][-3:] == ["/query_bill", "谢谢", "1"]


async def test_long_answer_is_split_at_the_variable_limit_and_summarised(make_gateway, phone):
    gw = await make_gateway("aliyun", SMS_MAX_PARTS="3")
    await gw.post("/sms/aliyun/up", [up_item(phone, "长文本", 3001)])
    await gw.settle()
    parts = gw.texts(phone)
    assert 1 < len(parts) <= 3 and all(len(p) <= 35 for p in parts)
    assert parts[-1].endswith("详询95598")
    assert "0.5783" in "".join(parts)


@pytest.mark.parametrize("path", ["/sms/aliyun/up", "/sms/aliyun/report", "/sms/tencent/up",
                                  "/sms/tencent/report"])
async def test_forged_callbacks_are_refused(make_gateway, phone, path):
    gw = await make_gateway("aliyun")
    body = [up_item(phone, "你好", 4001)]
    assert (await gw.post(path, body, token=""))[0] == 403
    assert (await gw.post(path, body, token="x" + gw.token))[0] == 403
    await gw.settle()
    assert gw.rasa.received.get(f"sms:{phone}") is None and gw.texts(phone) == []


async def test_ip_allowlist(make_gateway, phone):
    gw = await make_gateway("aliyun", SMS_CALLBACK_ALLOWED_IPS="10.1.2.0/24")
    assert (await gw.post("/sms/aliyun/up", [up_item(phone, "你好", 4101)]))[0] == 403
    gw2 = await make_gateway("aliyun", SMS_CALLBACK_ALLOWED_IPS="10.1.2.0/24,127.0.0.1")
    assert (await gw2.post("/sms/aliyun/up", [up_item(phone, "你好", 4102)]))[0] == 200


async def test_malformed_callbacks(make_gateway, phone):
    gw = await make_gateway("aliyun")
    assert await gw.post("/sms/aliyun/up", None, raw=b"{not json") == \
        (400, {"code": 1, "msg": "malformed JSON"})
    assert (await gw.post("/sms/tencent/report", None, raw=b"[1, 2]"))[0] == 400
    assert (await gw.post("/sms/tencent/report", None, raw=b"[1, 2]"))[1]["result"] == 1
    # A batch with one broken item: the good one is handled, the push is acknowledged.
    status, _ = await gw.post("/sms/aliyun/up", [{"phone_number": "abc", "content": "x"},
                                                 up_item(phone, "你好", 5001)])
    await gw.settle()
    assert status == 200 and gw.rasa.received[f"sms:{phone}"] == ["你好"]


async def test_duplicated_pushes_are_handled_once(make_gateway, phone):
    gw = await make_gateway("aliyun", count=2)
    item = up_item(phone, "你好", 6001)
    for index in (0, 1, 0):  # Aliyun retries, possibly to another instance
        assert (await gw.post("/sms/aliyun/up", [item], index=index))[0] == 200
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == ["你好"]
    assert len(gw.texts(phone)) == 1


async def test_out_of_order_uplinks_in_one_push_are_handled_in_send_order(make_gateway, phone):
    gw = await make_gateway("aliyun")
    await gw.post("/sms/aliyun/up", [
        up_item(phone, "第二条", 7002, send_time="2026-11-23 10:00:02"),
        up_item(phone, "第一条", 7001, send_time="2026-11-23 10:00:01")])
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == ["第一条", "第二条"]


@pytest.mark.parametrize("word", ["TD", "td", "退订", "Ｔ", "r", "ＴＤ"])
async def test_opt_out_confirmed_once_then_proactive_suppressed_until_opt_in(make_gateway, phone, word):
    gw = await make_gateway("aliyun")
    await gw.post("/sms/aliyun/up", [up_item(phone, word, 8001)])
    await gw.post("/sms/aliyun/up", [up_item(phone, "TD", 8002)])
    await gw.settle()
    assert [s["template"] for s in gw.fake.sent if s["phone"] == phone] == ["SMS_900000003"]
    assert gw.rasa.received.get(f"sms:{phone}") is None  # keywords never reach the assistant
    adapter = gw.runtime().channel.adapter
    notice = Notice("outage_notice", {"area": "钟灵街社区", "start": "9:00", "end": "17:00",
                                      "reason": "检修"})
    suppressed = await adapter.send(phone, notice, "notice")
    assert (suppressed.status, suppressed.reason) == ("skipped", "opted_out")
    await gw.post("/sms/aliyun/up", [up_item(phone, "订阅", 8003)])
    await gw.settle()
    assert gw.fake.sent[-1]["template"] == "SMS_900000004"
    assert (await adapter.send(phone, notice, "notice")).status == "sent"
    assert gw.fake.sent[-1]["template"] == "SMS_900000006"


async def test_answers_and_confirmations_go_through_the_deliverer(make_gateway, phone):
    from prometheus_client import REGISTRY

    def delivered(purpose: str) -> float:
        return REGISTRY.get_sample_value("powerdesk_gateway_deliveries_total", {
            "channel": "sms", "purpose": purpose, "status": "sent", "reason": ""}) or 0.0

    gw = await make_gateway("aliyun")
    replies, notices = delivered("reply"), delivered("notice")
    await gw.post("/sms/aliyun/up", [up_item(phone, "你好", 8101)])
    await gw.settle()
    assert gw.texts(phone) == ["收到：你好"] and delivered("reply") == replies + 1
    await gw.post("/sms/aliyun/up", [up_item(phone, "退订", 8102)])
    await gw.settle()   # the confirmation is a transactional notice: opt-out does not stop it
    assert gw.fake.sent[-1]["template"] == "SMS_900000003" and delivered("notice") == notices + 1


async def test_delivery_reports_update_message_state(make_gateway, phone):
    gw = await make_gateway("aliyun")
    await gw.post("/sms/aliyun/up", [up_item(phone, "你好", 9001)])
    await gw.settle()
    outbox = gw.runtime().outbox
    msg_id = gw.fake.sent[-1]["out_id"]
    assert (await outbox.get(msg_id))["state"] == "sent"
    late = report_items(gw.fake.sent[-1:], report_time="2026-11-23 10:00:09")
    early = report_items(gw.fake.sent[-1:], success=False, err_code="MK:0001",
                         report_time="2026-11-23 10:00:05")
    assert await gw.post("/sms/aliyun/report", late) == (200, {"code": 0, "msg": "成功"})
    assert (await gw.post("/sms/aliyun/report", early))[0] == 200   # older: ignored
    assert (await gw.post("/sms/aliyun/report", late))[0] == 200    # duplicate: harmless
    state = await outbox.get(msg_id)
    assert state["state"] == "delivered" and state["report_code"] == "DELIVERED"


async def test_tencent_delivery_report(make_gateway, phone):
    gw = await make_gateway("tencent")
    await gw.post("/sms/tencent/up", reply_item(phone, "你好"))
    await gw.settle()
    serial = gw.fake.sent[-1]["serial"]
    status, body = await gw.post("/sms/tencent/report",
                                 tencent_report_items(gw.fake.sent[-1:], ok=False, errmsg="MK:0005"))
    assert (status, body) == (200, {"result": 0, "errmsg": "OK"})
    outbox = gw.runtime().outbox
    msg_id = await outbox.redis.get(f"pd:{{sms}}:pid:tencent:{serial}:{phone}")
    state = await outbox.get(msg_id)
    assert state["state"] == "undelivered" and state["report_code"] == "MK:0005"


async def test_reply_rate_limit_across_two_instances_queues_with_a_log_line(make_gateway, phone, caplog):
    caplog.set_level(logging.INFO, logger="channels.sms")
    gw = await make_gateway("aliyun", count=2, SMS_REPLY_LIMITS="2/h")
    for i, index in enumerate((0, 1, 0)):
        await gw.post("/sms/aliyun/up", [up_item(phone, f"问题{i}", 10001 + i)], index=index)
        await gw.settle()
    assert len(gw.texts(phone)) == 2
    assert "reply rate limit for this number reached" in caplog.text
    assert "*******" + phone[-4:] in caplog.text and phone not in caplog.text
    outbox = gw.runtime(0).outbox
    queued = [m for m in await outbox.redis.zrange("pd:{sms}:outbox", 0, -1)
              if (await outbox.get(m)).get("phone") == phone]
    assert len(queued) == 1
    # Held until the hour rolls over: if that happens during a later test, that test's worker
    # would send it to that test's provider fake (using up a throttle_next meant for its own SMS).
    await outbox.redis.zrem("pd:{sms}:outbox", *queued)


async def test_provider_throttling_is_retried_not_dropped(make_gateway, phone):
    gw = await make_gateway("aliyun")
    gw.fake.throttle_next()
    await gw.post("/sms/aliyun/up", [up_item(phone, "你好", 11001)])
    await gw.settle()
    assert gw.texts(phone) == []
    outbox = gw.runtime().outbox
    (msg_id,) = [m for m in await outbox.redis.zrange("pd:{sms}:outbox", 0, -1)
                 if (await outbox.get(m)).get("phone") == phone]
    await outbox.redis.zadd("pd:{sms}:outbox", {msg_id: 0})  # its time has come
    await outbox.run_due()  # this pass or the instance's own worker (every second) sends it
    for _ in range(50):
        if (await outbox.get(msg_id))["state"] == "sent":
            break
        await asyncio.sleep(0.1)
    assert gw.texts(phone) == ["收到：你好"]
    assert (await outbox.get(msg_id))["attempts"] == "2"


async def test_disabled_channel_answers_503_and_gateway_runs(redis_url, rasa_fake, monkeypatch):
    from channels.app import create_admin_app, create_app
    from channels.config import GatewayConfig

    for key in [k for k in os.environ if k.startswith(("SMS_", "ALIYUN_SMS", "TENCENT_SMS"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RASA_URL", rasa_fake.url)
    app = create_app(GatewayConfig.from_env())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    admin = TestServer(create_admin_app(app), host="127.0.0.1")  # /healthz is on the admin port
    await admin.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(str(server.make_url("/sms/aliyun/up")), json=[]) as r:
                assert r.status == 503
            async with session.get(str(admin.make_url("/healthz"))) as r:
                assert r.status == 200
    finally:
        await admin.close()
        await server.close()
