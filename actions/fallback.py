"""What the assistant says when it did not understand (the FallbackClassifier's nlu_fallback).

``action_handle_fallback`` asks the customer to rephrase and offers the most common services
as buttons. From the second misunderstood message in a row it also offers a human agent
(slot ``fallback_outcome = offer_human``; the rules turn a following "好的" into
``action_request_human``). The count comes from the tracker's events only: consecutive user
messages classified ``nlu_fallback`` or answered by this action (a rule sends a bare "嗯" after
"请换个说法" here), back to the last message that was understood or the start of the session;
no state is kept anywhere else.
"""
from __future__ import annotations

from typing import Any, Iterable

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import EventList, buttons
from actions.constants import HOTLINE

FALLBACK_INTENT = "nlu_fallback"
ACTION_NAME = "action_handle_fallback"
OFFER_HUMAN_AFTER = 2

SUGGESTIONS = (
    ("查电费", "/query_bill"),
    ("停电查询", "/query_outage"),
    ("营业厅排队", "/queue_lookup"),
    ("投诉建议", "/complain"),
    ("转人工", "/request_human"),
)


def consecutive_fallbacks(events: Iterable[dict[str, Any]]) -> int:
    """How many of the latest user messages in a row were not understood, the latest included.

    A message counts when the NLU classified it ``nlu_fallback`` or when the assistant answered
    it with this action (a bare "嗯" after "请换个说法" reaches it by a rule, not by the NLU).
    The latest message is the one being answered now, so it always counts.
    """
    count = 0
    answered_by_fallback = True  # the latest message: this action is answering it
    for event in reversed(list(events)):
        kind = event.get("event")
        if kind == "session_started":
            break
        if kind == "action" and event.get("name") == ACTION_NAME:
            answered_by_fallback = True
            continue
        if kind != "user":
            continue
        intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        if intent != FALLBACK_INTENT and not answered_by_fallback:
            break
        count += 1
        answered_by_fallback = False
    return count


class ActionHandleFallback(Action):
    """Ask to rephrase; after two misunderstandings in a row, offer a human agent."""

    def name(self) -> str:
        return ACTION_NAME

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> EventList:
        count = consecutive_fallbacks(tracker.events or [])
        if count >= OFFER_HUMAN_AFTER:
            dispatcher.utter_message(
                text="非常抱歉，我还是没能理解您的问题，给您添麻烦了。需要为您转接人工客服吗？"
                     f"您也可以选择下面的常用服务，或拨打{HOTLINE}供电服务热线。",
                buttons=buttons(("好的，转人工", "/request_human"), ("不用了", "/deny"), *SUGGESTIONS[:4]),
            )
            return [SlotSet("fallback_outcome", "offer_human")]
        dispatcher.utter_message(
            text="抱歉，我没有完全理解您的意思。您可以换个说法再说一次，例如“查上个月电费”“明天会停电吗”，"
                 "或者直接选择下面的常用服务：",
            buttons=buttons(*SUGGESTIONS),
        )
        return [SlotSet("fallback_outcome", "rephrase")]
