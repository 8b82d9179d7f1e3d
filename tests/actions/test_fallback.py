"""The NLU fallback: rephrase first, a human offered from the second misunderstanding in a row.

The count comes only from the tracker events sent to the real action server.
"""
from __future__ import annotations

import uuid

from tests.support.actions import run_action, slot_events, texts, user_message


def sender() -> str:
    return f"web:test-fallback-{uuid.uuid4().hex[:10]}"


def user(text: str, intent: str) -> dict:
    return {"event": "user", "text": text, "parse_data": user_message(text, intent, confidence=0.3)}


def bot(text: str) -> dict:
    return {"event": "bot", "text": text}


def action(name: str) -> dict:
    return {"event": "action", "name": name}


async def fallback(url: str, events: list[dict]) -> dict:
    latest = next(e for e in reversed(events) if e["event"] == "user")
    return await run_action(url, "action_handle_fallback", sender_id=sender(),
                            latest_message=latest["parse_data"], events=events)


def payloads(result: dict) -> list[str]:
    return [b["payload"] for r in result["responses"] for b in r.get("buttons") or []]


async def test_first_fallback_asks_to_rephrase_with_suggestions(action_server_url):
    result = await fallback(action_server_url, [
        action("action_listen"), user("查电费", "query_bill"), action("action_query_bill"),
        action("action_listen"), user("那个东西咋弄呀", "nlu_fallback"),
    ])
    assert slot_events(result)["fallback_outcome"] == "rephrase"
    assert "换个说法" in texts(result)[0]
    assert payloads(result) == ["/query_bill", "/query_outage", "/queue_lookup", "/complain",
                                "/request_human"]


async def test_second_fallback_in_a_row_offers_a_human(action_server_url):
    result = await fallback(action_server_url, [
        action("action_listen"), user("那个东西咋弄呀", "nlu_fallback"),
        action("action_handle_fallback"), bot("抱歉，我没有完全理解您的意思。"),
        action("action_listen"), user("就是那个啊", "nlu_fallback"),
    ])
    assert slot_events(result)["fallback_outcome"] == "offer_human"
    assert "转接人工" in texts(result)[0]
    assert payloads(result)[:2] == ["/request_human", "/deny"]


async def test_an_understood_message_resets_the_count(action_server_url):
    result = await fallback(action_server_url, [
        user("那个东西咋弄呀", "nlu_fallback"), action("action_handle_fallback"),
        user("你好", "greet"), action("utter_greet"),
        user("就是那个啊", "nlu_fallback"),
    ])
    assert slot_events(result)["fallback_outcome"] == "rephrase"


async def test_a_new_session_resets_the_count(action_server_url):
    result = await fallback(action_server_url, [
        user("那个东西咋弄呀", "nlu_fallback"), action("action_handle_fallback"),
        action("action_session_start"), {"event": "session_started"}, action("action_listen"),
        user("就是那个啊", "nlu_fallback"),
    ])
    assert slot_events(result)["fallback_outcome"] == "rephrase"


async def test_third_fallback_still_offers_a_human(action_server_url):
    events = []
    for text in ("嗯", "啊那个", "就那个"):
        events += [action("action_listen"), user(text, "nlu_fallback"), action("action_handle_fallback")]
    result = await fallback(action_server_url, events[:-1])
    assert slot_events(result)["fallback_outcome"] == "offer_human"


async def test_a_bare_yes_answered_by_the_fallback_counts_as_a_second_misunderstanding(action_server_url):
    """After "请换个说法", a vague "嗯…就是那个" (classified affirm) reaches the action by a rule;
    it is the second misunderstanding in a row, so a human is offered."""
    result = await fallback(action_server_url, [
        action("action_listen"), user("那个东西咋弄呀", "nlu_fallback"),
        action("action_handle_fallback"), bot("抱歉，我没有完全理解您的意思。"),
        action("action_listen"), user("嗯…就是那个", "affirm"),
    ])
    assert slot_events(result)["fallback_outcome"] == "offer_human"
    assert "转接人工" in texts(result)[0]


async def test_a_yes_answered_otherwise_still_resets_the_count(action_server_url):
    result = await fallback(action_server_url, [
        action("action_listen"), user("那个东西咋弄呀", "nlu_fallback"), action("action_handle_fallback"),
        action("action_listen"), user("好的", "affirm"), action("utter_anything_else"),
        action("action_listen"), user("就是那个啊", "nlu_fallback"),
    ])
    assert slot_events(result)["fallback_outcome"] == "rephrase"
