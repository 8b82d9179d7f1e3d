"""WeChatAdapter on real Redis and the loopback WeChat API fake: the 48-hour window, template
messages for notices and outside the window, and WeChat's refusals by meaning."""
from __future__ import annotations

import secrets

import pytest

from channels.messages import Button, Notice, Reply
from channels.options import OptionMemory
from channels.optout import OptOutStore
from channels.wechat.adapter import (
    WINDOW_SECONDS, WeChatAdapter, last_seen_key, record_interaction, undeliverable_key)
from channels.wechat.api import WeChatApi
from channels.wechat.config import WeChatConfig
from channels.wechat.templates import WeChatTemplates

NOW = 1_795_000_000.0  # pinned clock (2026-11-18)
CS = "/cgi-bin/message/custom/send"
OUTAGE = {"area": "江宁区东山街道百家湖社区", "start": "2026-11-24 09:00", "end": "2026-11-24 17:00",
          "reason": "线路检修"}
TEMPLATES = WeChatTemplates.from_dict({
    "outage_notice": {"template_id": "TPL-outage", "url": "https://example.com/outage",
                      "data": {"thing1": "${area}", "time2": "${start}", "time3": "${end}",
                               "thing4": "${reason}"}},
    "bill_due": {"template_id": "", "text": "缴费提醒：${month}电费${amount}元。",
                 "data": {"thing1": "${month}电费"}},
    "generic_reply": {"template_id": "TPL-reply", "data": {"thing1": "${content}"}},
})


def openid() -> str:
    return "o" + secrets.token_hex(14)


@pytest.fixture
async def make_adapter(redis, wechat_api):
    apis: list[WeChatApi] = []

    def make(templates: WeChatTemplates = TEMPLATES) -> WeChatAdapter:
        # No hot retries: the API client's own retry policy is tested elsewhere.
        api = WeChatApi(wechat_api.base_url, wechat_api.app_id, wechat_api.app_secret, redis,
                        retry_delays=())
        apis.append(api)
        return WeChatAdapter(WeChatConfig(templates=templates), redis, api, clock=lambda: NOW)

    yield make
    for api in apis:
        await api.close()


async def seen(redis, user: str, hours_ago: float) -> None:
    await record_interaction(redis, user, at=NOW - hours_ago * 3600)


QUESTION = [Reply("请问您要查询哪个月的电费？", (Button("本月", "/a"), Button("上个月", "/b")))]


async def test_inside_the_window_replies_go_as_customer_service_messages(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    await seen(redis, user, 47)
    assert await adapter.in_window(user)
    result = await adapter.send(user, QUESTION, "reply")
    assert (result.status, result.reason) == ("sent", "")
    assert wechat_api.texts_to(user) == ["请问您要查询哪个月的电费？\n1. 本月\n2. 上个月\n请回复序号进行选择。"]
    assert wechat_api.templates_to(user) == []
    assert [o.title for o in await OptionMemory(redis, 60).offered(f"wechat:{user}")] == ["本月", "上个月"]


async def test_the_gateways_own_texts_leave_the_options_on_offer(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    await seen(redis, user, 1)
    await adapter.send(user, QUESTION, "reply")
    result = await adapter.send_fixed_text(user, "已收到您的图片。请用文字描述您的问题。")
    assert result.status == "sent" and wechat_api.texts_to(user)[-1].startswith("已收到您的图片")
    assert len(await OptionMemory(redis, 60).offered(f"wechat:{user}")) == 2


async def test_responder_records_every_interaction_for_48_hours(redis):
    user = openid()
    await record_interaction(redis, user)
    assert WINDOW_SECONDS - 5 < await redis.ttl(last_seen_key(user)) <= WINDOW_SECONDS


async def test_outside_the_48_hour_window_a_reply_goes_as_the_reply_template(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    await seen(redis, user, 49)
    assert not await adapter.in_window(user)
    result = await adapter.send(user, [Reply("您的工单已派发，请保持电话畅通。")], "agent")
    assert result.status == "sent"
    assert wechat_api.texts_to(user) == []
    (sent,) = wechat_api.templates_to(user)
    assert sent["template_id"] == "TPL-reply"
    assert sent["data"] == {"thing1": {"value": "您的工单已派发，请保持电话畅通。"}}


async def test_outside_the_window_a_reply_that_fits_no_template_is_skipped(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()  # never seen: outside the window
    result = await adapter.send(user, QUESTION, "reply")  # longer than a thing field
    assert (result.status, result.reason) == ("skipped", "outside_window")
    assert wechat_api.texts_to(user) == [] and wechat_api.templates_to(user) == []
    # The customer never saw these options: a number must not pick them.
    assert await OptionMemory(redis, 60).offered(f"wechat:{user}") == []
    no_reply_template = make_adapter(WeChatTemplates.from_dict({}))
    assert (await no_reply_template.send(user, [Reply("好的")], "reply")).reason == "outside_window"


async def test_45015_falls_back_to_the_template_and_closes_the_window(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    await seen(redis, user, 1)
    wechat_api.refuse_user(user, 45015)
    result = await adapter.send(user, [Reply("已为您登记。")], "reply")
    assert result.status == "sent"
    assert [t["template_id"] for t in wechat_api.templates_to(user)] == ["TPL-reply"]
    assert wechat_api.calls.count((CS, 45015)) == 1
    assert await redis.exists(last_seen_key(user)) == 0
    assert await redis.hget(undeliverable_key(user), "errcode") == b"45015"


async def test_45047_falls_back_to_the_template_for_what_is_left(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    await seen(redis, user, 1)
    wechat_api.fail_next(CS, 45047)
    result = await adapter.send(user, [Reply("已为您登记。")], "reply")
    assert result.status == "sent"
    assert [t["data"]["thing1"]["value"] for t in wechat_api.templates_to(user)] == ["已为您登记。"]
    # Without a template that fits, the customer-service quota leaves it unsent.
    wechat_api.fail_next(CS, 45047)
    result = await adapter.send(user, QUESTION, "reply")
    assert (result.status, result.reason) == ("skipped", "over_limit")


async def test_43004_not_following_is_skipped_and_stops_proactive_messages(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    await seen(redis, user, 1)
    wechat_api.refuse_user(user, 43004)
    result = await adapter.send(user, [Reply("您好")], "reply")
    assert (result.status, result.reason) == ("skipped", "not_following")
    assert await OptOutStore(redis).is_opted_out(f"wechat:{user}")
    notice = await adapter.send(user, Notice("outage_notice", OUTAGE), "notice")
    assert (notice.status, notice.reason) == ("skipped", "not_following")
    assert wechat_api.templates_to(user) == []


async def test_40003_invalid_openid_fails_without_retry(make_adapter, redis, wechat_api):
    adapter = make_adapter()
    bad = "bad!"  # not an openid of this account
    await seen(redis, bad, 1)
    result = await adapter.send(bad, [Reply("您好")], "reply")
    assert (result.status, result.reason, result.retry) == ("failed", "invalid_openid", False)
    notice = await adapter.send(bad, Notice("outage_notice", OUTAGE), "notice")
    assert (notice.status, notice.reason, notice.retry) == ("failed", "invalid_openid", False)


async def test_other_errors_fail_with_retry_by_their_class(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    await seen(redis, user, 1)
    wechat_api.fail_next(CS, -1)  # system busy: transient
    result = await adapter.send(user, [Reply("您好")], "reply")
    assert (result.status, result.reason, result.retry) == ("failed", "errcode_-1", True)
    wechat_api.fail_next(CS, 45002)  # content too long: retrying cannot help
    result = await adapter.send(user, [Reply("您好")], "reply")
    assert (result.status, result.reason, result.retry) == ("failed", "errcode_45002", False)


async def test_a_notice_is_its_template_message_with_values_shortened_to_fit(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()  # outside the window: templates need none
    long_reason = "配合市政道路改造工程进行的10千伏线路迁改及设备更换作业"
    result = await adapter.send(user, Notice("outage_notice", {**OUTAGE, "reason": long_reason}), "notice")
    assert result.status == "sent"
    (sent,) = wechat_api.templates_to(user)
    assert sent["template_id"] == "TPL-outage" and sent["url"] == "https://example.com/outage"
    assert sent["data"]["thing1"] == {"value": "江宁区东山街道百家湖社区"}
    assert sent["data"]["time2"] == {"value": "2026-11-24 09:00"}
    assert sent["data"]["thing4"]["value"] == long_reason[:19] + "…"
    assert wechat_api.texts_to(user) == []


async def test_a_notice_without_template_id_is_a_text_inside_the_window_only(make_adapter, redis, wechat_api):
    adapter, user = make_adapter(), openid()
    bill = Notice("bill_due", {"month": "2026年10月", "amount": "128.50"})
    assert (await adapter.send(user, bill, "notice")).reason == "outside_window"
    await seen(redis, user, 2)
    assert (await adapter.send(user, bill, "notice")).status == "sent"
    assert wechat_api.texts_to(user) == ["缴费提醒：2026年10月电费128.50元。"]
    unknown = await adapter.send(user, Notice("meter_reading", {}), "notice")
    assert (unknown.status, unknown.reason) == ("skipped", "no_template")


async def test_templates_file_is_validated_at_start(tmp_path):
    from channels.config import ConfigError

    good = {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s"}
    assert WeChatConfig.from_env(good).templates.get("outage_notice") is not None  # shipped file
    path = tmp_path / "t.yml"
    path.write_text("templates:\n  generic_reply:\n    template_id: X\n    data: {thing1: '${text}'}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\$\{content\}"):
        WeChatConfig.from_env({**good, "WECHAT_TEMPLATES_FILE": str(path)})
    with pytest.raises(ConfigError, match="cannot read"):
        WeChatConfig.from_env({**good, "WECHAT_TEMPLATES_FILE": str(tmp_path / "missing.yml")})
    assert WeChatConfig.from_env({"WECHAT_OPTIONS_TTL_SECONDS": "42"}).options_ttl_seconds == 42
