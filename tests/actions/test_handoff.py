"""Requests for a human agent: recorded in the real Redis stream through the real action server."""
from __future__ import annotations

import time
import uuid

import pytest
import redis.asyncio as aioredis

from integrations.customer_store import HANDOFF_STREAM
from scripts.stack import free_port
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
    assert "人工客服" in reply and "95598" in reply
    recorded = await requests_of(redis_url, conversation)
    assert len(recorded) == 1
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
    assert "已为您登记" in texts(later)[0]
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


async def test_redis_down_is_a_polite_busy_reply(action_server_url_redis_down):
    result = await run_action(action_server_url_redis_down, "action_request_human",
                              sender_id=sender(), latest_message=user_message("转人工", "request_human"))
    assert texts(result) == [BUSY_TEXT]
    assert result["events"] == []
