"""Reminder subscriptions (订阅 / 退订 缴费提醒、停电通知).

Subscriptions live in the CustomerStore per conversation and per 户号 (kinds ``bill_due`` and
``outage``); the broadcast workers send from there. Subscribing needs a verified bound 户号
(reminders carry account data); unsubscribing never does: anyone may stop messages sent to
their own conversation. Which kinds the customer means is read from the text (缴费/电费/账单 →
bill_due, 停电 → outage, neither or both → both); clauses that keep something (留着, 保留,
只要…) are left out when unsubscribing, so "电费提醒关掉，停电的留着" removes only bill_due.
After a notice (actions/notice_context.py), an unsubscribe naming no kind ("TD" on WeChat or the
web chat; SMS handles TD in the gateway) removes that notice's kind only.
"""
from __future__ import annotations

import re
from typing import Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.account import require_binding, requested_account
from actions.common import BackendAction, EventList, Services, buttons, conversation_id
from actions.notice_context import notice_of, unsubscribe_note
from actions.text import normalize
from integrations.customer_store import REMINDER_KINDS
from integrations.masking import mask_account

KIND_NAMES = {"bill_due": "缴费到期提醒", "outage": "停电通知"}
_BILL_WORDS = re.compile(r"缴费|交费|电费|电废|账单|帐单|欠费|到期|截止|出账|代扣")
_OUTAGE_WORDS = re.compile(r"停电|停点|断电|检修|来电|限电")
_KEEP_WORDS = re.compile(r"留着|保留|继续|还要|只要|不用取消|别取消|不要取消")
_ALL_WORDS = re.compile(r"全部|所有|都|一切|统统")


def kinds_in(text: str, skip_keep_clauses: bool = False) -> tuple[str, ...]:
    """Reminder kinds the text names (both when it names neither)."""
    text = normalize(text)
    clauses = re.split(r"[，,。.；;！!？?、\s]+", text)
    if skip_keep_clauses:
        clauses = [c for c in clauses if not _KEEP_WORDS.search(c)]
    joined = " ".join(clauses)
    found = []
    if _BILL_WORDS.search(joined):
        found.append("bill_due")
    if _OUTAGE_WORDS.search(joined):
        found.append("outage")
    return tuple(found) or REMINDER_KINDS


def names_no_kind(text: str) -> bool:
    """Whether the text names no reminder kind and not "all" either ("TD", "退订")."""
    text = normalize(text)
    return not (_BILL_WORDS.search(text) or _OUTAGE_WORDS.search(text) or _ALL_WORDS.search(text))


def kinds_text(kinds) -> str:
    return "、".join(KIND_NAMES[k] for k in REMINDER_KINDS if k in set(kinds))


class ActionSubscribeReminder(BackendAction):
    """Subscribe the conversation to reminders of its verified bound 户号."""

    def name(self) -> str:
        return "action_subscribe_reminder"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict, services: Services) -> EventList:
        conv = conversation_id(tracker)
        bound = await services.customers.get_binding(conv)
        wanted = requested_account(tracker)
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if intent == "subscribe_reminder":
            kinds = kinds_in(tracker.latest_message.get("text") or "")
        else:  # resumed after binding: the request was remembered in the slot
            kinds = tuple(k for k in (tracker.get_slot("reminder_kinds") or ())
                          if k in REMINDER_KINDS) or REMINDER_KINDS
        if bound is None or (wanted is not None and wanted != bound):
            events = await require_binding(dispatcher, tracker, services, "subscribe_reminder",
                                           "订阅提醒", account_number=wanted)
            return events + [SlotSet("reminder_kinds", list(kinds))]
        now = await services.customers.subscribe_reminder(conv, bound, kinds)
        dispatcher.utter_message(
            text=f"订阅成功！已为户号{mask_account(bound)}开通{kinds_text(kinds)}。"
                 f"当前已订阅：{kinds_text(now)}。我们会通过当前渠道及时通知您，感谢您的支持。"
                 "如需退订，随时回复“取消提醒”。",
            buttons=buttons(("取消提醒", "/unsubscribe_reminder"), ("查电费", "/query_bill")),
        )
        return [SlotSet("needs_binding", False), SlotSet("reminder_kinds", None)]


class ActionUnsubscribeReminder(BackendAction):
    """Unsubscribe: everything, one 户号's reminders, or only the kinds the customer named."""

    def name(self) -> str:
        return "action_unsubscribe_reminder"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict, services: Services) -> EventList:
        conv = conversation_id(tracker)
        customers = services.customers
        text = tracker.latest_message.get("text") or ""
        account: Optional[str] = requested_account(tracker)
        subscribed = await customers.subscriptions_of(conv)
        notice = notice_of(tracker)
        note = unsubscribe_note(notice)
        if not subscribed:
            dispatcher.utter_message(text="您当前没有订阅任何提醒，不会收到缴费或停电提醒消息。" + note)
            return []
        kinds = kinds_in(text, skip_keep_clauses=True)
        if notice is not None and notice.reminder_kind and names_no_kind(text):
            kinds = (notice.reminder_kind,)  # "TD" to a notice: that notice's kind
        removed = await customers.unsubscribe_reminder(
            conv, account_number=account,
            kinds=None if set(kinds) == set(REMINDER_KINDS) else kinds)
        if not removed:
            target = f"户号{mask_account(account)}的" if account else ""
            dispatcher.utter_message(text=f"您没有订阅{target}{kinds_text(kinds)}，无需取消。{note}")
            return []
        done = "；".join(f"户号{mask_account(a)}的{kinds_text(k)}" for a, k in sorted(removed.items()))
        remaining = await customers.subscriptions_of(conv)
        reply = f"已为您取消{done}。"
        if remaining:
            left = "；".join(f"户号{mask_account(a)}：{kinds_text(k)}"
                            for a, k in sorted(remaining.items()))
            reply += f"您仍订阅着：{left}。"
        else:
            reply += "您将不再收到提醒消息。"
        reply += "如需重新订阅，随时告诉我“订阅提醒”。" + note
        dispatcher.utter_message(text=reply, buttons=buttons(("重新订阅", "/subscribe_reminder")))
        return []
