"""Requests for a human agent (转人工).

``action_request_human`` (转人工, or "好的" to the offer after two misunderstandings) and the
actions that hand off on their own (an urgent fault report, a complaint graded severe: see
:class:`actions.settings.HandoffSettings`) call :func:`request_handoff`: it appends the request
to the Redis stream ``pd:handoff:requests`` with a short, masked reason for the agent, the queue
hint and what the agent should know (customer type, masked 户号, channel, trigger). The queue:
``manager:<id>`` when the bound account has a customer manager (客户经理制, from the billing
backend), ``vip`` for other 政企/大客户 (enterprise) accounts, else ``general``. The gateway
consumes the stream and opens the hand-off (:mod:`channels.handoff`). A conversation that asked
within the last ``REPEAT_WINDOW_SECONDS`` is told its request stands instead of being queued
twice (the gateway resets the slot when a hand-off closes).
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.common import BackendAction, EventList, Services, bound_account, conversation_id
from actions.constants import HOTLINE
from actions.settings import HandoffSettings
from integrations.errors import IntegrationError
from integrations.masking import mask_account, mask_text

logger = logging.getLogger(__name__)

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


@functools.lru_cache(maxsize=1)
def handoff_settings() -> HandoffSettings:
    """The action server's hand-off settings, read from the environment once."""
    return HandoffSettings.from_env()


async def request_handoff(tracker: Tracker, services: Services, *, trigger: str, reason: str) -> str:
    """Ask the gateway to hand this conversation to a human agent; returns the queue hint."""
    cid = conversation_id(tracker)
    account = await bound_account(tracker, services)
    customer_type, queue = "residential", "general"
    if account:
        try:
            info = await services.billing.get_account(account)
        except IntegrationError as exc:  # the request matters more than its queue
            logger.warning("hand-off of %s: account lookup failed (%s); general queue",
                           mask_text(cid), type(exc).__name__)
        else:
            customer_type = info.customer_type
            if info.customer_manager is not None:
                queue = f"manager:{info.customer_manager.id}"
            elif customer_type == "enterprise":
                queue = "vip"
    await services.customers.record_human_request(cid, reason, {
        "queue": queue, "customer_type": customer_type,
        "account_masked": mask_account(account) if account else "",
        "channel": cid.partition(":")[0], "trigger": trigger})
    return queue


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
        trigger = "fallback" if tracker.get_slot("fallback_outcome") == "offer_human" else "request_human"
        queue = await request_handoff(tracker, services, trigger=trigger, reason=handoff_reason(tracker))
        whom = "您的专属客户经理" if queue.startswith("manager:") else "人工客服"
        dispatcher.utter_message(
            text=f"好的，正在为您转接{whom}，请稍候，客服会在当前渠道与您联系。"
                 f"如果情况紧急（如停电抢修、用电安全问题），请直接拨打{HOTLINE}供电服务热线，24小时有人接听。"
        )
        return [SlotSet("handoff_requested_at", now), SlotSet("fallback_outcome", None)]
