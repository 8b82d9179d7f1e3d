"""Requests for a human agent: recorded in the real Redis stream through the real action server."""
from __future__ import annotations

import time
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

from backends import demo_accounts as demo

from integrations.customer_store import HANDOFF_STREAM
from scripts.stack import free_port
from tests.actions.account_data import bind
from tests.support.actions import run_action, slot_events, texts, user_message


BUSY_TEXT = "系统繁忙，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"


@pytest.fixture(scope="module")
def action_server_url_redis_down(stack, backend_client_env) -> str:
    """An action server whose Redis is unreachable (nothing listens on its port)."""
    return stack.start_action_server(free_port(), f"redis://127.0.0.1:{free_port()}/0",
                                     backend_client_env)


def sender() -> str:
    return f"web:test-handoff-{uuid.uuid4().hex[:10]}"


async def requests_of(redis_url: str, conversation: str) -> list[dict[str, str]]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await client.xrange(HANDOFF_STREAM)
    finally:
        await client.aclose()
    return [fields for _, fields in entries if fields.get("conversation_id") == conversation]


def user_event(text: str, intent: str) -> dict:
    return {"event": "user", "text": text, "parse_data": user_message(text, intent)}


async def test_request_is_recorded_with_a_masked_reason(action_server_url, redis_url):
    conversation = sender()
    text = "机器人听不懂，转人工，我电话13912345678"
    events = [user_event("我家户号3201234567电费怎么这么贵", "query_bill"),
              user_event(text, "request_human")]
    result = await run_action(action_server_url, "action_request_human", sender_id=conversation,
                              latest_message=user_message(text, "request_human"), events=events)
    reply = texts(result)[0]
    assert "正在为您转接人工客服" in reply and "95598" in reply
    recorded = await requests_of(redis_url, conversation)
    assert len(recorded) == 1
    assert {k: recorded[0][k] for k in ("queue", "customer_type", "account_masked", "channel", "trigger")} \
        == {"queue": "general", "customer_type": "residential", "account_masked": "", "channel": "web",
            "trigger": "request_human"}
    reason = recorded[0]["reason"]
    assert "转人工" in reason and "电费怎么这么贵" in reason
    assert "13912345678" not in reason and "*******5678" in reason
    assert "3201234567" not in reason and "******4567" in reason
    assert isinstance(slot_events(result)["handoff_requested_at"], float)


async def test_a_second_request_soon_after_is_not_queued_twice(action_server_url, redis_url):
    conversation = sender()
    first = await run_action(action_server_url, "action_request_human", sender_id=conversation,
                             latest_message=user_message("转人工", "request_human"))
    asked_at = slot_events(first)["handoff_requested_at"]
    again = await run_action(action_server_url, "action_request_human", sender_id=conversation,
                             slots={"handoff_requested_at": asked_at},
                             latest_message=user_message("人呢？快点转人工", "request_human"))
    assert "已经登记过了" in texts(again)[0]
    assert len(await requests_of(redis_url, conversation)) == 1

    # long after the first request, a new one is recorded
    later = await run_action(action_server_url, "action_request_human", sender_id=conversation,
                             slots={"handoff_requested_at": time.time() - 3 * 3600},
                             latest_message=user_message("转人工", "request_human"))
    assert "正在为您转接" in texts(later)[0]
    assert len(await requests_of(redis_url, conversation)) == 2


async def test_accepting_the_offer_after_fallbacks_records_why(action_server_url, redis_url):
    conversation = sender()
    events = [user_event("啊啊那个就是那个东西", "nlu_fallback"),
              user_event("嗯嗯就是那个啥", "nlu_fallback"),
              user_event("好的", "affirm")]
    result = await run_action(action_server_url, "action_request_human", sender_id=conversation,
                              slots={"fallback_outcome": "offer_human"},
                              latest_message=user_message("好的", "affirm"), events=events)
    assert slot_events(result)["fallback_outcome"] is None
    (recorded,) = await requests_of(redis_url, conversation)
    assert "after 2 misunderstood" in recorded["reason"]
    assert recorded["trigger"] == "fallback"


async def test_redis_down_is_a_polite_busy_reply(action_server_url_redis_down):
    result = await run_action(action_server_url_redis_down, "action_request_human",
                              sender_id=sender(), latest_message=user_message("转人工", "request_human"))
    assert texts(result) == [BUSY_TEXT]
    assert result["events"] == []


async def test_an_enterprise_account_goes_to_its_customer_manager(action_server_url, redis_url):
    conversation = sender()
    await bind(redis_url, conversation, demo.ENTERPRISE)
    result = await run_action(action_server_url, "action_request_human", sender_id=conversation,
                              latest_message=user_message("我要办理增容，找客户经理", "request_human"))
    assert "专属客户经理" in texts(result)[0]
    (recorded,) = await requests_of(redis_url, conversation)
    assert recorded["queue"] == "manager:KH01" and recorded["customer_type"] == "enterprise"
    assert recorded["account_masked"] == "******7890"


async def test_an_enterprise_account_without_a_manager_goes_to_the_vip_queue(
        action_server_url, redis_url, backends_url):
    conversation = sender()
    account = await enterprise_without_manager(backends_url)
    await bind(redis_url, conversation, account)
    await run_action(action_server_url, "action_request_human", sender_id=conversation,
                     latest_message=user_message("转人工", "request_human"))
    (recorded,) = await requests_of(redis_url, conversation)
    assert (recorded["queue"], recorded["customer_type"]) == ("vip", "enterprise")
    residential = sender()
    await bind(redis_url, residential, demo.RESIDENTIAL_TOU)
    await run_action(action_server_url, "action_request_human", sender_id=residential,
                     latest_message=user_message("转人工", "request_human"))
    (recorded,) = await requests_of(redis_url, residential)
    assert (recorded["queue"], recorded["customer_type"]) == ("general", "residential")


async def enterprise_without_manager(backends_url: str) -> str:
    """An enterprise 户号 whose account data names no customer manager (seeded: every fifth)."""
    numbers = enterprise_numbers()
    async with aiohttp.ClientSession() as session:
        for number in numbers:
            async with session.get(f"{backends_url}/billing/accounts/{number}") as response:
                body = await response.json()
            if body["customer_type"] == "enterprise" and body["customer_manager"] is None:
                return number
    raise AssertionError("no enterprise account without a manager")


def enterprise_numbers() -> list[str]:
    """Every active enterprise 户号 of the reference data (the seed is deterministic)."""
    import random

    from backends.seed import SEED, _accounts

    return [a.account_number for a in _accounts(random.Random(SEED))
            if a.customer_type == "enterprise" and a.status == "active"]


async def test_a_severe_complaint_is_handed_off(action_server_url, redis_url):
    conversation = sender()
    result = await run_action(action_server_url, "action_submit_complaint", sender_id=conversation,
                              slots={"complaint_description": "再不给我解决我就找记者曝光你们",
                                     "complaint_category": "其他", "complaint_contact": "13912345678",
                                     "complaint_severity": "high"},
                              latest_message=user_message("13912345678", "inform"))
    assert "已同时为您转接人工客服" in "\n".join(texts(result))
    (recorded,) = await requests_of(redis_url, conversation)
    assert recorded["trigger"] == "severe_complaint" and "TS" in recorded["reason"]
    assert "13912345678" not in recorded["reason"]

    normal = sender()
    await run_action(action_server_url, "action_submit_complaint", sender_id=normal,
                     slots={"complaint_description": "电费比上个月多了一百块，想核实一下",
                            "complaint_category": "电费争议", "complaint_contact": "13912345678",
                            "complaint_severity": "normal"},
                     latest_message=user_message("13912345678", "inform"))
    assert await requests_of(redis_url, normal) == []


async def test_an_urgent_fault_is_handed_off(action_server_url, redis_url):
    conversation = sender()
    result = await run_action(
        action_server_url, "action_submit_fault_report", sender_id=conversation,
        slots={"fault_description": "楼下电线断了掉在地上，还在冒火花", "fault_address": "双龙大道1688号",
               "phone": "15851234567", "fault_severity": "urgent", "fault_outage_checked": True},
        latest_message=user_message("15851234567", "inform"))
    assert "已同时为您转接人工客服" in "\n".join(texts(result))
    (recorded,) = await requests_of(redis_url, conversation)
    assert recorded["trigger"] == "urgent_fault" and "GD" in recorded["reason"]


def test_handoff_settings_from_the_environment():
    from actions.settings import HandoffSettings, SettingsError

    default = HandoffSettings.from_env({})
    assert default.on_urgent_fault and default.complaint_severities == {"high", "urgent"}
    custom = HandoffSettings.from_env({"HANDOFF_ON_URGENT_FAULT": "off", "HANDOFF_ON_SEVERE_COMPLAINT": "urgent"})
    assert not custom.on_urgent_fault and custom.complaint_severities == {"urgent"}
    assert HandoffSettings.from_env({"HANDOFF_ON_SEVERE_COMPLAINT": "off"}).complaint_severities == set()
    with pytest.raises(SettingsError, match="HANDOFF_ON_SEVERE_COMPLAINT"):
        HandoffSettings.from_env({"HANDOFF_ON_SEVERE_COMPLAINT": "sometimes"})
    with pytest.raises(SettingsError, match="HANDOFF_ON_URGENT_FAULT"):
        HandoffSettings.from_env({"HANDOFF_ON_URGENT_FAULT": "maybe"})
