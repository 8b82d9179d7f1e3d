"""Keyed notices (broadcast idempotency keys) on WeChat, counted at the loopback API fake: a key
goes out at most once per openid (template messages through WeChat's ``client_msg_id``,
customer-service messages through a record in Redis), throttling of a keyed notice goes back to
the sender, every broadcast kind renders, and ``TEMPLATESENDJOBFINISH`` of a keyed template
reaches ``pd:notice:reports``."""
from __future__ import annotations

import asyncio
import secrets
from datetime import datetime

import aiohttp
import pytest
import yaml

from channels.messages import Notice
from channels.notice_reports import REPORTS_STREAM
from channels.wechat.adapter import (
    CHINA, URGENT_MARK, WeChatAdapter, client_msg_id, notice_record_key, record_interaction)
from channels.wechat.api import WeChatApi
from channels.wechat.config import WeChatConfig
from channels.wechat.templates import DEFAULT_TEMPLATES_FILE, WeChatTemplates
from tests.channels.wechat.test_adapter import NOW, OUTAGE, TEMPLATES, openid

CS = "/cgi-bin/message/custom/send"
TPL = "/cgi-bin/message/template/send"
BILL = Notice("bill_due", {"month": "2026年10月", "amount": "128.50"})  # customer-service only


def new_key() -> str:
    return f"bc:outage:T{secrets.token_hex(4)}:notice:{secrets.randbelow(10**10):010d}"


@pytest.fixture
async def make_adapter(redis, wechat_api):
    apis: list[WeChatApi] = []

    def make(templates: WeChatTemplates = TEMPLATES, retry_delays=()) -> WeChatAdapter:
        api = WeChatApi(wechat_api.base_url, wechat_api.app_id, wechat_api.app_secret, redis,
                        retry_delays=retry_delays)
        apis.append(api)
        return WeChatAdapter(WeChatConfig(templates=templates), redis, api, clock=lambda: NOW)

    yield make
    for api in apis:
        await api.close()


def sends(wechat_api, path: str) -> int:
    return sum(1 for p, code in wechat_api.calls if p == path)


async def test_a_keyed_template_notice_is_sent_once_and_carries_a_digest_of_its_key(make_adapter, wechat_api):
    adapter, user, key = make_adapter(), openid(), new_key()
    notice = Notice("outage_notice", OUTAGE, key=key)
    first = await adapter.send(user, notice, "notice")
    second = await adapter.send(user, notice, "notice")
    assert first.status == second.status == "sent" and second.reason == "duplicate"
    (sent,) = wechat_api.templates_to(user)
    assert sent["client_msg_id"] == client_msg_id(key) != key  # a digest: the key names the 户号
    assert key.rsplit(":", 1)[-1] not in sent["client_msg_id"]
    assert sends(wechat_api, TPL) == 1  # the repeat was answered from the record
    # The same campaign to another follower, and another campaign to this one, are other notices.
    assert (await adapter.send(openid(), notice, "notice")).status == "sent"
    assert (await adapter.send(user, Notice("outage_notice", OUTAGE, key=new_key()), "notice")).reason == ""
    assert len(wechat_api.templates_to(user)) == 2


async def test_a_worker_killed_after_wechat_accepted_resends_with_the_same_client_msg_id(
        make_adapter, redis, wechat_api):
    adapter, user, key = make_adapter(), openid(), new_key()
    template = TEMPLATES.get("outage_notice")
    # The killed worker's call reached WeChat; its record was never written.
    data = template.data({**OUTAGE, "urgent_mark": ""})
    first_msgid = await adapter._api.send_template(user, template.template_id, data, template.url,
                                                   client_msg_id=client_msg_id(key))
    assert not await redis.exists(notice_record_key(user, key))
    result = await adapter.send(user, Notice("outage_notice", OUTAGE, key=key), "notice")
    assert result.status == "sent"
    assert len(wechat_api.templates_to(user)) == 1 and wechat_api.duplicates == 1
    assert await redis.hget(notice_record_key(user, key), "msgid") == str(first_msgid).encode()


async def test_the_fake_deduplicates_client_msg_id_as_documented(wechat_api, redis):
    api = WeChatApi(wechat_api.base_url, wechat_api.app_id, wechat_api.app_secret, redis)
    try:
        user, data = openid(), {"thing1": {"value": "x"}}
        a = await api.send_template(user, "TPL", data, client_msg_id="bc:1")
        assert await api.send_template(user, "TPL", data, client_msg_id="bc:1") == a
        assert await api.send_template(openid(), "TPL", data, client_msg_id="bc:1") != a
        assert await api.send_template(user, "TPL", data) != a  # no id: no de-duplication
        wechat_api.client_msg_id_ttl = 0  # beyond the 10 minutes WeChat does not guarantee it
        assert await api.send_template(user, "TPL", data, client_msg_id="bc:1") != a
    finally:
        await api.close()
    assert wechat_api.duplicates == 1 and len(wechat_api.templates_to(user)) == 3


def test_client_msg_id_is_a_digest_of_the_key():
    short = client_msg_id("bc:outage:JH00001:fault:3201001234")
    assert "3201001234" not in short and short == client_msg_id("bc:outage:JH00001:fault:3201001234")
    long = client_msg_id("bc:" + "x" * 80)
    assert long.startswith("k") and len(long) == 41 and long == client_msg_id("bc:" + "x" * 80)
    assert client_msg_id("bc:停电:1") != client_msg_id("bc:停电:2")


async def test_a_keyed_customer_service_notice_is_sent_once(make_adapter, redis, wechat_api):
    adapter, user, key = make_adapter(), openid(), new_key()
    await record_interaction(redis, user, at=NOW - 3600)
    notice = Notice(BILL.kind, BILL.params, key=key)
    assert (await adapter.send(user, notice, "notice")).status == "sent"
    again = await adapter.send(user, notice, "notice")
    assert (again.status, again.reason) == ("sent", "duplicate")
    assert wechat_api.texts_to(user) == ["缴费提醒：2026年10月电费128.50元。"]


async def test_a_customer_service_send_without_outcome_is_not_repeated(make_adapter, redis, wechat_api):
    adapter, user, key = make_adapter(), openid(), new_key()
    await record_interaction(redis, user, at=NOW - 3600)
    # What a worker killed mid-call leaves behind: the key marked as being sent.
    await redis.hset(notice_record_key(user, key), mapping={"state": "sending", "via": "cs",
                                                            "at": str(int(NOW))})
    result = await adapter.send(user, Notice(BILL.kind, BILL.params, key=key), "notice")
    assert (result.status, result.reason) == ("sent", "unconfirmed")
    assert wechat_api.texts_to(user) == []


async def test_a_refused_customer_service_send_can_be_tried_again(make_adapter, redis, wechat_api):
    adapter, user, key = make_adapter(), openid(), new_key()
    await record_interaction(redis, user, at=NOW - 3600)
    notice = Notice(BILL.kind, BILL.params, key=key)
    wechat_api.fail_next(CS, -1)
    failed = await adapter.send(user, notice, "notice")
    assert (failed.status, failed.retry) == ("failed", True)
    assert not await redis.exists(notice_record_key(user, key))
    assert (await adapter.send(user, notice, "notice")).status == "sent"
    assert len(wechat_api.texts_to(user)) == 1


async def test_throttling_of_a_keyed_notice_goes_back_to_the_sender(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(retry_delays=(0.01, 0.01)), openid()
    wechat_api.fail_next(TPL, 45009, times=5)
    result = await adapter.send(user, Notice("outage_notice", OUTAGE, key=new_key()), "notice")
    assert (result.status, result.reason, result.retry) == ("failed", "throttled", True)
    midnight = datetime.fromtimestamp(result.when, CHINA)
    assert (midnight.hour, midnight.minute) == (0, 0) and 0 < result.when - NOW <= 86400
    assert sends(wechat_api, TPL) == 1  # not retried inside the client: the engine backs off
    # Unkeyed sends keep the client's own bounded retries and the old result.
    unkeyed = await adapter.send(user, Notice("outage_notice", OUTAGE), "notice")
    assert (unkeyed.status, unkeyed.reason, unkeyed.retry) == ("failed", "errcode_45009", True)
    assert sends(wechat_api, TPL) == 4
    # 45047 (this customer's customer-service quota) on a keyed customer-service notice.
    await record_interaction(redis, user, at=NOW - 3600)
    wechat_api.fail_next(CS, 45047)
    cs = await adapter.send(user, Notice(BILL.kind, BILL.params, key=new_key()), "notice")
    assert (cs.status, cs.reason, cs.retry, cs.when) == ("failed", "throttled", True, None)


H1_PARAMS = {
    "bill_summary": {"account": "******4567", "month": "2026年10月", "amount": "123.45", "kwh": "312",
                     "due_date": "2026年11月25日"},
    "bill_due": {"account": "******4567", "month": "2026年10月", "amount": "123.45",
                 "due_date": "2026年11月25日", "days_left": "3"},
    "arrears": {"account": "******4567", "amount": "245.10", "months": "2026年9月、2026年10月",
                "due_date": "2026年10月25日"},
    "low_balance": {"account": "******4567", "balance": "32.50", "threshold": "50.00"},
    "outage_notice": {"area": "百家湖社区双龙大道沿线（双龙大道100号至500号）", "community": "百家湖社区",
                      "start": "11月29日 08:30", "end": "11月29日 17:30", "reason": "10千伏线路检修",
                      "outage_kind": "planned", "outage_kind_text": "计划停电", "stage": "notice"},
    "power_restored": {"area": "百家湖社区双龙大道沿线", "community": "百家湖社区", "reason": "10千伏线路故障",
                       "start": "11月28日 09:10", "restored_at": "11月28日 14:05"},
}


def shipped_templates(with_ids: bool) -> WeChatTemplates:
    entries = yaml.safe_load(DEFAULT_TEMPLATES_FILE.read_text(encoding="utf-8"))["templates"]
    if with_ids:
        entries = {kind: {**entry, "template_id": f"TPL-{kind}"} for kind, entry in entries.items()}
    return WeChatTemplates.from_dict(entries)


async def test_every_broadcast_kind_renders_as_template_and_as_text(make_adapter, redis, wechat_api):
    as_template, as_text = make_adapter(shipped_templates(True)), make_adapter(shipped_templates(False))
    user = openid()
    await record_interaction(redis, user, at=NOW - 3600)
    for kind, params in H1_PARAMS.items():
        assert (await as_template.send(user, Notice(kind, params), "notice")).status == "sent", kind
        assert (await as_text.send(user, Notice(kind, params), "notice")).status == "sent", kind
    templates, texts = wechat_api.templates_to(user), wechat_api.texts_to(user)
    assert [t["template_id"] for t in templates] == [f"TPL-{kind}" for kind in H1_PARAMS]
    for template in templates:  # every field filled, no placeholder left
        assert all(v["value"] and "${" not in v["value"] for v in template["data"].values())
    assert all("${" not in text and "None" not in text for text in texts)
    assert "123.45元" in texts[0] and "32.50元" in texts[3] and "14:05" in texts[5]


async def test_urgent_notices_are_marked_urgent_first(make_adapter, redis, wechat_api):
    as_template, as_text = make_adapter(shipped_templates(True)), make_adapter(shipped_templates(False))
    user = openid()
    await record_interaction(redis, user, at=NOW - 3600)
    fault = {**H1_PARAMS["outage_notice"], "outage_kind": "fault", "outage_kind_text": "故障停电",
             "stage": "fault"}
    for adapter in (as_template, as_text):
        assert (await adapter.send(user, Notice("outage_notice", fault, urgent=True), "notice")).status == "sent"
        assert (await adapter.send(user, Notice("outage_notice", H1_PARAMS["outage_notice"]),
                                   "notice")).status == "sent"
    urgent, planned = wechat_api.templates_to(user)
    first = next(iter(urgent["data"]))
    assert urgent["data"][first]["value"].startswith(URGENT_MARK)
    assert not planned["data"][first]["value"].startswith(URGENT_MARK)
    urgent_text, planned_text = wechat_api.texts_to(user)
    assert urgent_text.startswith(URGENT_MARK) and URGENT_MARK not in planned_text


async def reports(redis, key: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(REPORTS_STREAM)
            if fields[b"key"] == key.encode()]


async def test_templatesendjobfinish_of_a_keyed_notice_reaches_the_reports_stream(
        make_gateways, make_adapter, redis, wechat_api):
    gw = await make_gateways()
    wechat_api.reporter = gw.pusher()  # the fake pushes like WeChat: signed and encrypted (safe)
    adapter = make_adapter()
    delivered, blocked = new_key(), new_key()
    user, other = openid(), openid()
    assert (await adapter.send(user, Notice("outage_notice", OUTAGE, key=delivered), "notice")).status == "sent"
    assert await wechat_api.push_template_reports() == [(200, "success")]
    assert (await adapter.send(other, Notice("outage_notice", OUTAGE, key=blocked), "notice")).status == "sent"
    assert (await adapter.send(other, Notice("outage_notice", OUTAGE), "notice")).status == "sent"  # unkeyed
    assert await wechat_api.push_template_reports("failed:user block") == [(200, "success")] * 2
    assert await reports(redis, delivered) == [{b"key": delivered.encode(), b"channel": b"wechat",
                                                b"status": b"delivered", b"code": b"success"}]
    assert [(r[b"status"], r[b"code"]) for r in await reports(redis, blocked)] == \
        [(b"undelivered", b"user_block")]


async def test_the_fake_injects_throttling_over_http_and_reports_on_its_own(
        make_gateways, make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{wechat_api.base_url}/_fake/fail",
                                json={"path": TPL, "errcode": 45009, "times": 2}) as response:
            assert response.status == 200
    key = new_key()
    notice = Notice("outage_notice", OUTAGE, key=key)
    for _ in range(2):
        assert (await adapter.send(user, notice, "notice")).reason == "throttled"
    assert (await adapter.send(user, notice, "notice")).status == "sent"
    # auto_report: the fake pushes TEMPLATESENDJOBFINISH by itself, like WeChat.
    gw = await make_gateways()
    wechat_api.reporter, wechat_api.auto_report = gw.pusher(), True
    other = new_key()
    assert (await adapter.send(user, Notice("outage_notice", OUTAGE, key=other), "notice")).status == "sent"
    for _ in range(200):
        if await reports(redis, other):
            break
        await asyncio.sleep(0.02)
    assert [r[b"status"] for r in await reports(redis, other)] == [b"delivered"]


async def test_notices_may_go_as_text_inside_the_window(redis, wechat_api):
    api = WeChatApi(wechat_api.base_url, wechat_api.app_id, wechat_api.app_secret, redis,
                    retry_delays=())
    adapter = WeChatAdapter(WeChatConfig(templates=shipped_templates(True),
                                         notice_text_in_window=True), redis, api, clock=lambda: NOW)
    try:
        inside, outside, closed = openid(), openid(), openid()
        for user in (inside, closed):
            await record_interaction(redis, user, at=NOW - 3600)
        wechat_api.refuse_user(closed, 45015)  # WeChat says the window is closed after all
        params = H1_PARAMS["power_restored"]
        for user in (inside, outside, closed):
            notice = Notice("power_restored", params, key=new_key())
            assert (await adapter.send(user, notice, "notice")).status == "sent"
            assert (await adapter.send(user, notice, "notice")).reason == "duplicate"
        assert len(wechat_api.texts_to(inside)) == 1 and wechat_api.templates_to(inside) == []
        assert wechat_api.texts_to(outside) == [] and len(wechat_api.templates_to(outside)) == 1
        assert wechat_api.texts_to(closed) == [] and len(wechat_api.templates_to(closed)) == 1
    finally:
        await api.close()


def test_the_text_in_window_switch_is_read_from_the_environment():
    from channels.wechat.config import WeChatConfigError

    assert not WeChatConfig.from_env({}).notice_text_in_window
    assert WeChatConfig.from_env({"WECHAT_NOTICE_TEXT_IN_WINDOW": "on"}).notice_text_in_window
    with pytest.raises(WeChatConfigError, match="WECHAT_NOTICE_TEXT_IN_WINDOW"):
        WeChatConfig.from_env({"WECHAT_NOTICE_TEXT_IN_WINDOW": "maybe"})


async def test_a_batch_of_keyed_notices_is_recorded_like_single_sends(make_adapter, redis, wechat_api):
    # send_notices (a broadcast's batch): each keyed template goes once, a refusal is answered
    # by its meaning while the others are sent, and a repeat is answered from the records.
    adapter = make_adapter()
    users, key = [openid() for _ in range(4)], new_key()
    wechat_api.refuse_user(users[1], 43004)  # not following
    items = [(user, Notice("outage_notice", OUTAGE, key=f"{key}{n}")) for n, user in enumerate(users)]
    items.append((users[2], BILL))  # not keyed: the single-send way (its customer-service text)
    first = await adapter.send_notices(items)
    assert [(r.status, r.reason) for r in first[:4]] == [
        ("sent", ""), ("skipped", "not_following"), ("sent", ""), ("sent", "")]
    for n, user in enumerate(users):
        record = await redis.hgetall(notice_record_key(user, f"{key}{n}"))
        assert bool(record) == (n != 1)
        assert len(wechat_api.templates_to(user)) == (0 if n == 1 else 1)
    calls = sends(wechat_api, TPL)
    again = await adapter.send_notices(items[:4])
    assert [(r.status, r.reason) for r in again] == [
        ("sent", "duplicate"), ("skipped", "not_following"), ("sent", "duplicate"), ("sent", "duplicate")]
    assert sends(wechat_api, TPL) == calls + 1  # only the refused one was asked again
