"""Requests for a human agent (转人工).

``action_request_human`` records the request in the CustomerStore (Redis stream
``pd:handoff:requests``) with a short, masked reason for the agent, and tells the customer a
human agent will follow up, with the 95598 hotline for anything urgent. A conversation that
asked within the last ``REPEAT_WINDOW_SECONDS`` is told its request stands instead of being
queued twice. The real hand-off of the conversation is a later issue.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.common import BackendAction, EventList, Services, conversation_id
from actions.constants import HOTLINE
from integrations.masking import mask_text

REPEAT_WINDOW_SECONDS = 30 * 60
MAX_REASON_CHARS = 300

_CONTROL_INTENTS = ("request_human", "affirm")


def _user_events(tracker: Tracker) -> list[dict[str, Any]]:
    return [e for e in tracker.events or [] if e.get("event") == "user"]


def _intent(event: dict[str, Any]) -> str:
    return ((event.get("parse_data") or {}).get("intent") or {}).get("name") or ""


def handoff_reason(tracker: Tracker) -> str:
    """Why the customer wants a person, for the agent: what they said and what came before.

    Phone numbers and 户号 are masked; the agent reads the full conversation elsewhere.
    """
    latest = (tracker.latest_message.get("text") or "").strip()
    said = [latest] if latest and not latest.startswith("/") else []
    events = _user_events(tracker)
    fallbacks = 0
    context: Optional[str] = None
    # the latest user event is the message being answered; look at the ones before it
    for event in reversed(events[:-1] if events else []):
        intent = _intent(event)
        text = (event.get("text") or "").strip()
        if context is None and intent not in _CONTROL_INTENTS and text and not text.startswith("/"):
            context = f"{intent or 'unknown'}: {text}"
        if intent == "nlu_fallback":
            fallbacks += 1
        elif intent not in _CONTROL_INTENTS:
            break
    parts = []
    if said:
        parts.append(f"customer: {said[0]}")
    if fallbacks:
        parts.append(f"after {fallbacks} misunderstood message(s)")
    if context:
        parts.append(f"before: {context}")
    return mask_text("; ".join(parts) or "customer asked for a human agent")[:MAX_REASON_CHARS]


class ActionRequestHuman(BackendAction):
    """Record a request for a human agent and tell the customer what happens next."""

    def name(self) -> str:
        return "action_request_human"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        now = time.time()
        previous = tracker.get_slot("handoff_requested_at")
        if isinstance(previous, (int, float)) and 0 <= now - previous < REPEAT_WINDOW_SECONDS:
            dispatcher.utter_message(
                text="您的人工服务请求已经登记过了，人工客服会尽快与您联系，请您耐心等待。"
                     f"如有紧急情况，请直接拨打{HOTLINE}供电服务热线。"
            )
            return [SlotSet("fallback_outcome", None)]
        await services.customers.record_human_request(conversation_id(tracker), handoff_reason(tracker))
        dispatcher.utter_message(
            text="好的，已为您登记人工服务请求，人工客服会尽快通过当前渠道与您联系，请留意消息。"
                 f"如果情况紧急（如停电抢修、用电安全问题），请直接拨打{HOTLINE}供电服务热线，24小时有人接听。"
        )
        return [SlotSet("handoff_requested_at", now), SlotSet("fallback_outcome", None)]
