"""Ticket follow-up (工单进度): the status of complaint (TS…) and repair (GD…) tickets.

Used by the complaint flow (a follow-up question) and by the application query (a ticket id
the NLU took for an application query).

Privacy: a ticket's status is shown only to the conversation that opened it or to a
conversation bound to the ticket's 户号. Anyone else, and an unknown id, hear the same
未查询到您名下的该工单, so ticket ids cannot be probed.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.clock import describe_moment, now_local
from actions.common import EventList, Services, bound_account, buttons, conversation_id
from actions.constants import HOTLINE
from actions.text import normalize
from integrations.errors import NotFound

NOT_YOURS_TEXT = (
    "未查询到您名下的该工单。请核对工单号；如果工单是用其他渠道或其他户号提交的，"
    f"请在提交时使用的渠道查询，或拨打{HOTLINE}供电服务热线。"
)
MAX_TICKETS_LISTED = 3

STATUS_LABELS = {
    "received": "已受理，等待处理",
    "dispatched": "已派发至责任部门",
    "processing": "正在处理",
    "resolved": "已处理完毕",
    "closed": "已办结",
}
# Short labels for the entries of a ticket's history (the note says the rest).
HISTORY_LABELS = {
    "received": "受理", "dispatched": "派单", "processing": "处理中", "resolved": "处理完毕",
    "closed": "办结",
}
KIND_LABELS = {"complaint": "投诉", "repair": "抢修"}
# Repair tickets (actions/fault_report.py) carry category codes; complaints the Chinese name.
REPAIR_CATEGORY_LABELS = {
    "safety_hazard": "安全隐患", "area_outage": "区域停电", "tripped_breaker": "跳闸",
    "voltage": "电压异常", "meter": "电表故障", "household_outage": "户内停电",
}

_TICKET_ID = re.compile(r"(?<![A-Za-z0-9])((?:TS|GD)\d{10,16})(?!\d)", re.IGNORECASE)


def find_ticket_id(text: Optional[str]) -> Optional[str]:
    """A complaint (TS…) or repair (GD…) ticket id in the text, upper-cased."""
    match = _TICKET_ID.search(normalize(text).replace(" ", ""))
    return match.group(1).upper() if match else None


def _visible_to(ticket: Any, conversation: str, account: Optional[str]) -> bool:
    if ticket.conversation_id and ticket.conversation_id == conversation:
        return True
    return bool(account and ticket.account_number and ticket.account_number == account)


def describe_ticket(ticket: Any, now: dt.datetime, with_history: bool = True) -> str:
    """A ticket's status for the customer who may see it."""
    today = now.date()
    kind = KIND_LABELS.get(ticket.kind, "服务")
    lines = [f"{kind}工单号：{ticket.ticket_id}"]
    if ticket.category:
        lines.append(f"问题类别：{REPAIR_CATEGORY_LABELS.get(ticket.category, ticket.category)}")
    lines.append(f"提交时间：{describe_moment(ticket.created_at, today)}")
    lines.append(f"当前状态：{STATUS_LABELS.get(ticket.status, ticket.status)}")
    promised = ticket.promised_by
    if promised is not None and ticket.status not in ("resolved", "closed"):
        if promised < now and ticket.status == "received":
            lines.append(
                f"承诺联系时间：{describe_moment(promised, today)}前（已超时）。"
                f"非常抱歉让您久等了，您可以点击“转人工”请人工客服为您催办，或拨打{HOTLINE}。"
            )
        else:
            label = "承诺联系时间" if ticket.kind == "complaint" else "承诺到达时间"
            lines.append(f"{label}：{describe_moment(promised, today)}前")
    if with_history and ticket.history:
        lines.append("处理记录：")
        for event in sorted(ticket.history, key=lambda e: e.at):
            note = f"：{event.note}" if event.note else ""
            label = HISTORY_LABELS.get(event.status, event.status)
            lines.append(f"· {describe_moment(event.at, today)}【{label}】{note}")
    return "\n".join(lines)


async def answer_ticket_status(
    dispatcher: CollectingDispatcher, tracker: Tracker, services: Services, ticket_id: Optional[str]
) -> EventList:
    """Status of one ticket (when visible), or of this conversation's complaints (no id)."""
    conversation = conversation_id(tracker)
    account = await bound_account(tracker, services)
    now = now_local()
    if ticket_id:
        try:
            ticket = await services.tickets.get_ticket(ticket_id)
        except NotFound:
            ticket = None
        if ticket is None or not _visible_to(ticket, conversation, account):
            dispatcher.utter_message(
                text=NOT_YOURS_TEXT,
                buttons=buttons(("我要投诉", "/complain"), ("转人工", "/request_human")),
            )
            return [SlotSet("complaint_ticket", None)]
        dispatcher.utter_message(
            text="为您查到工单的处理情况：\n" + describe_ticket(ticket, now),
            buttons=_status_buttons(ticket, now),
        )
        return [SlotSet("complaint_ticket", ticket.ticket_id)]

    tickets = [t for t in await services.tickets.tickets_of(conversation) if t.kind == "complaint"]
    if not tickets:
        dispatcher.utter_message(
            text="没有查到您在当前会话中提交的投诉记录。请告诉我投诉工单号（TS开头），我来为您查询；"
                 "如需反映新的问题，请直接告诉我发生了什么。",
            buttons=buttons(("我要投诉", "/complain"), ("转人工", "/request_human")),
        )
        return [SlotSet("complaint_ticket", None)]
    tickets.sort(key=lambda t: t.created_at, reverse=True)
    latest, older = tickets[0], tickets[1:MAX_TICKETS_LISTED]
    text = "为您查到最近的投诉处理情况：\n" + describe_ticket(latest, now)
    if older:
        text += "\n\n您之前的投诉：\n" + "\n".join(
            f"· {t.ticket_id}（{t.category}）：{STATUS_LABELS.get(t.status, t.status)}" for t in older
        )
    dispatcher.utter_message(text=text, buttons=_status_buttons(latest, now))
    return [SlotSet("complaint_ticket", latest.ticket_id)]


def _status_buttons(ticket: Any, now: dt.datetime) -> list[dict[str, str]]:
    overdue = ticket.promised_by is not None and ticket.promised_by < now and ticket.status == "received"
    if overdue or ticket.status not in ("resolved", "closed"):
        return buttons(("转人工", "/request_human"))
    return buttons(("还有其他问题", "/complain"))
