"""The stricter budgets on creating things (queue numbers, repair tickets, complaints), through a
real action server started with small budgets, the Saturday-afternoon reference backends and
the session's Redis. What the backends hold is read back: a refused creation creates nothing.

Addresses come the way the gateway sends them, as the message metadata ``client_address``; each
test uses addresses of its own (the session's Redis keeps every budget).
"""
from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from actions.settings import CreationLimits, SettingsError
from scripts.stack import Stack, backends_env, free_port
from tests.support.actions import run_action, texts, user_message

PER_CONVERSATION, PER_ADDRESS = 2, 3


@pytest.fixture(scope="module")
def limited_action_server_url(stack: Stack, redis_url: str, saturday_backends_url: str) -> str:
    return stack.start_action_server(free_port(), redis_url, {
        **backends_env(saturday_backends_url),
        "NEW_TICKETS_PER_HOUR_CONVERSATION": str(PER_CONVERSATION),
        "NEW_TICKETS_PER_HOUR_ADDRESS": str(PER_ADDRESS),
    })


def web_conversation() -> str:
    return f"web:test-limits-{uuid.uuid4().hex[:12]}"


def message(text: str, intent: str, address: str | None) -> dict[str, Any]:
    parsed = user_message(text, intent)
    if address:
        parsed["metadata"] = {"client_address": address, "channel": "web"}
    return parsed


async def backend_get(url: str, path: str, **params: Any) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}{path}", params=params) as response:
            assert response.status == 200, (path, response.status)
            return await response.json()


def refused(reply: str) -> bool:
    return "过于频繁" in reply and "95598" in reply


async def test_queue_numbers_from_one_address_stop_at_its_budget(limited_action_server_url,
                                                                saturday_backends_url):
    halls = (await backend_get(saturday_backends_url, "/queue/halls"))["halls"]
    hall = next(h for h in halls if h["open_now"])
    types = (await backend_get(saturday_backends_url, "/queue/business-types"))["business_types"]
    business = next(t["name"] for t in types if t["code"] == hall["business_types"][0])

    async def take(conversation: str, address: str) -> str:
        result = await run_action(limited_action_server_url, "action_take_number",
                                  sender_id=conversation,
                                  slots={"hall": hall["name"], "business_type": business},
                                  latest_message=message("取号", "take_number", address))
        return "\n".join(texts(result))

    async def tickets(conversation: str) -> list:
        return (await backend_get(saturday_backends_url, "/queue/tickets", holder=conversation))["tickets"]

    conversations = [web_conversation() for _ in range(PER_ADDRESS + 1)]
    replies = [await take(c, "198.51.100.201") for c in conversations]
    assert [refused(r) for r in replies] == [False] * PER_ADDRESS + [True]
    assert "取号成功" in replies[0] and "在线取号" in replies[-1]
    assert [len(await tickets(c)) for c in conversations] == [1] * PER_ADDRESS + [0]
    # IPv4-mapped, as a dual-stack socket reports it: the same address, the same budget.
    late = web_conversation()
    assert refused(await take(late, "::ffff:198.51.100.201")) and await tickets(late) == []
    # Another address is not affected.
    other = web_conversation()
    assert "取号成功" in await take(other, "198.51.100.202")


async def test_repair_tickets_of_one_conversation_stop_at_its_budget(limited_action_server_url,
                                                                     saturday_backends_url):
    conversation = f"wechat:test-limits-{uuid.uuid4().hex[:12]}"  # WeChat: no address at all
    slots = {"fault_description": "就我家没电，邻居家有电", "fault_address": "湖熟街道和平村三组12号",
             "phone": "15851234567", "fault_severity": "normal", "fault_outage_checked": True}
    replies = []
    for _ in range(PER_CONVERSATION + 1):
        result = await run_action(limited_action_server_url, "action_submit_fault_report",
                                  sender_id=conversation, slots=slots,
                                  latest_message=message("15851234567", "inform", None))
        replies.append("\n".join(texts(result)))
    assert [refused(r) for r in replies] == [False] * PER_CONVERSATION + [True]
    assert "已为您登记抢修工单" in replies[0] and "提交报修" in replies[-1]
    tickets = await backend_get(saturday_backends_url, "/tickets/tickets", conversation_id=conversation)
    assert len(tickets["tickets"]) == PER_CONVERSATION


async def test_complaints_from_fresh_conversations_on_one_address_stop_at_its_budget(
        limited_action_server_url, saturday_backends_url):
    async def complain(conversation: str, address: str) -> str:
        result = await run_action(
            limited_action_server_url, "action_submit_complaint", sender_id=conversation,
            slots={"complaint_description": "抢修人员迟迟不到", "complaint_category": "抢修超时",
                   "complaint_contact": "13912345678", "complaint_severity": None},
            latest_message=message("13912345678", "inform", address))
        return "\n".join(texts(result))

    conversations = [web_conversation() for _ in range(PER_ADDRESS + 1)]
    replies = [await complain(c, "2001:db8:77:1::5") for c in conversations[:-1]]
    # Another address in the same IPv6 /64 is the same customer line.
    replies.append(await complain(conversations[-1], "2001:db8:77:1::9"))
    assert [refused(r) for r in replies] == [False] * PER_ADDRESS + [True]
    assert "工单号" in replies[0] and "提交投诉" in replies[-1]
    filed = [(await backend_get(saturday_backends_url, "/tickets/tickets", conversation_id=c))["tickets"]
             for c in conversations]
    assert [len(t) for t in filed] == [1] * PER_ADDRESS + [0]


def test_settings_have_defaults_and_refuse_bad_values():
    assert CreationLimits.from_env({}) == CreationLimits(per_conversation=3, per_address=10)
    assert CreationLimits.from_env({"NEW_TICKETS_PER_HOUR_ADDRESS": "50"}).per_address == 50
    for name, value in (("NEW_TICKETS_PER_HOUR_CONVERSATION", "0"), ("NEW_TICKETS_PER_HOUR_ADDRESS", "many")):
        with pytest.raises(SettingsError, match=name):
            CreationLimits.from_env({name: value})
