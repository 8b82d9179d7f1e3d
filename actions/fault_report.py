"""Fault reports (故障报修).

``action_check_fault_outage`` starts every fault report: it grades the report (safety advice
first for hazards, see actions/safety.py) and checks whether an ongoing outage already explains
the fault (then no ticket is opened). ``report_fault_form`` collects what a repair crew needs
and ``action_submit_fault_report`` opens the repair ticket with a promised arrival time taken
from the service commitments for the place's service zone (actions/places.py).
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.clock import as_local, describe_day, now_local
from actions.common import (
    BackendAction,
    BackendFormValidationAction,
    EventList,
    Services,
    bound_account,
    buttons,
    conversation_id,
)
from actions.constants import HOTLINE
from actions.creation_limits import REPAIR_TICKET, creation_allowed
from actions.entities import entity_values
from actions.handoff import MAX_REASON_CHARS, handoff_settings, request_handoff
from actions.outage import MAX_OUTAGES_SHOWN, describe_outage, is_ongoing, sorted_outages
from actions.phones import find_phone
from actions.places import ZONE_LABELS, Place, area_query, outage_covers, place_from_text
from actions.safety import grade_fault, safety_advice, self_help_tripped
from actions.severity import HIGH, NORMAL, URGENT, max_severity
from actions.text import normalize
from integrations.masking import mask_phone, mask_text
from integrations.tickets import NewTicket

SEVERITY_LABELS = {URGENT: "紧急（安全隐患）", HIGH: "较急（多户停电）", NORMAL: "一般"}

# What is left of a report after removing words that say "I want to report" and nothing else.
_GENERIC_REPORT = re.compile(
    r"你好|您好|请问|麻烦|帮我|帮忙|给我|我要|我想|想要|需要|要|一下|报个修|报修|故障|报障|登记|"
    r"申请|电话|多少|抢修|维修|修理|单子|工单|[的了啊呀吧呢吗哦嗯个一]|[\s\W\d_]"
)


def description_from_report(text: str) -> Optional[str]:
    """The report itself as description when it says more than "我要报修"."""
    plain = normalize(text)
    if plain.startswith("/"):
        return None
    return (text or "").strip()[:500] if len(_GENERIC_REPORT.sub("", plain)) >= 2 else None


async def _customer_place(
    tracker: Tracker, services: Services, account: Optional[str], address_text: Optional[str]
) -> Place:
    """Where the fault is: the bound account's registered place, else what the customer said."""
    if account:
        acct = await services.billing.get_account(account)
        return Place(acct.district, acct.street, acct.community, acct.address)
    named = entity_values(tracker, "area")
    said = " ".join(filter(None, [address_text, *named]))
    if not said:
        return Place()
    place = place_from_text(said, await services.outage.list_areas())
    if named and not place.most_specific():
        place = Place(address=place.address, named=area_query(named))
    return place


async def _covering_outages(
    services: Services, account: Optional[str], place: Place
) -> list[Any]:
    """Ongoing outages that reach the place (by 户号 when bound, else by the area named)."""
    if account:
        found = await services.outage.find_outages(account_number=account, status="ongoing")
    elif place.most_specific() or place.named:
        area = place.most_specific() or place.named
        found = await services.outage.find_outages(area=area, status="ongoing")
        found = [o for o in found if outage_covers(o, place)]
    else:
        return []
    return sorted_outages(o for o in found if is_ongoing(o))


def _known_outage_text(outages: list[Any]) -> str:
    today = now_local().date()
    body = "\n\n".join(describe_outage(o, today) for o in outages[:MAX_OUTAGES_SHOWN])
    return (
        "经查询，您所在的区域目前正在停电，抢修人员已经在处理，无需重复报修：\n\n"
        f"{body}\n\n给您带来不便，敬请谅解。恢复供电后无需任何操作；如果到了预计时间仍未来电，请再告诉我。"
    )


_FAULT_SLOTS_RESET = ("fault_description", "fault_address", "fault_severity", "fault_outage_checked")


class ActionCheckFaultOutage(BackendAction):
    """The first step of every fault report (see module doc)."""

    def name(self) -> str:
        return "action_check_fault_outage"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        said = tracker.latest_message.get("text") or ""
        grade = grade_fault(said)
        if grade.severity == URGENT:
            dispatcher.utter_message(text=safety_advice())

        account = await bound_account(tracker, services)
        place = await _customer_place(tracker, services, account, said)
        checked = bool(account or place.most_specific() or place.named)
        covering = await _covering_outages(services, account, place) if checked else []

        if covering and grade.severity != URGENT:
            dispatcher.utter_message(
                text=_known_outage_text(covering),
                buttons=buttons(("订阅停电提醒", "/subscribe_reminder"), ("转人工", "/request_human")),
            )
            return [SlotSet(s, None) for s in _FAULT_SLOTS_RESET] + [SlotSet("fault_route", "covered")]

        if covering:  # a hazard is reported even inside a known outage: the crew must know
            dispatcher.utter_message(
                text="您所在区域目前正在停电抢修，您反映的安全隐患我马上为您登记为紧急工单。"
            )
        elif grade.tripped:
            dispatcher.utter_message(text=self_help_tripped())
        return [
            SlotSet("fault_severity", grade.severity),
            SlotSet("fault_outage_checked", checked),
            SlotSet("fault_description", description_from_report(said)),
            SlotSet("fault_address", place.address if account else None),
            SlotSet("fault_route", "form"),
        ]


class ValidateReportFaultForm(BackendFormValidationAction):
    """Checks the description (grading it; safety advice at once for a hazard), the address
    and the contact phone of a fault report."""

    def name(self) -> str:
        return "validate_report_fault_form"

    async def extract_phone(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "phone" or entity_values(tracker, "phone"):
            return {}
        phone = find_phone(tracker.latest_message.get("text") or "")
        return {"phone": phone} if phone else {}

    async def validate_fault_description(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:  # a reset by action_check_fault_outage, not an answer
            return {"fault_description": None}
        text = str(value).strip()
        if len(normalize(text)) < 2 or text.startswith("/"):
            dispatcher.utter_message(text="请用一两句话描述一下故障情况，例如“家里全部没电”或“表箱冒烟”。")
            return {"fault_description": None}
        grade = grade_fault(text)
        previous = tracker.get_slot("fault_severity")
        if grade.severity == URGENT and previous != URGENT:
            dispatcher.utter_message(text=safety_advice())
        elif grade.tripped and previous is None:
            dispatcher.utter_message(text=self_help_tripped())
        return {
            "fault_description": text[:500],
            "fault_severity": max_severity(previous, grade.severity),
        }

    async def validate_fault_address(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:
            return {"fault_address": None}
        text = normalize(str(value))
        if len(re.sub(r"[\W\d_a-zA-Z]", "", text)) < 2:
            dispatcher.utter_message(
                text="抱歉，这个地址不够具体。请告诉我所在的区、街道或乡镇、小区或村，以及楼栋门牌。"
            )
            return {"fault_address": None}
        return {"fault_address": text[:200]}

    async def validate_phone(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is None:
            return {"phone": None}
        phone = find_phone(str(value))
        if not phone:
            dispatcher.utter_message(
                text="抱歉，这个号码好像不对。请输入11位手机号码，或带区号的固定电话。"
            )
            return {"phone": None}
        return {"phone": phone}


class ActionSubmitFaultReport(BackendAction):
    """Opens the repair ticket once the form is complete (or explains a known outage)."""

    def name(self) -> str:
        return "action_submit_fault_report"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        description = tracker.get_slot("fault_description") or ""
        address = tracker.get_slot("fault_address")
        phone = tracker.get_slot("phone")
        grade = grade_fault(description)
        severity = max_severity(tracker.get_slot("fault_severity"), grade.severity)
        category = grade.category if grade.severity == severity else _category_for(severity)
        account = await bound_account(tracker, services)
        place = await _customer_place(tracker, services, account, address)
        reset = [SlotSet(s, None) for s in _FAULT_SLOTS_RESET] + [SlotSet("fault_route", None)]

        if severity != URGENT and not tracker.get_slot("fault_outage_checked"):
            covering = await _covering_outages(services, account, place)
            if covering:
                dispatcher.utter_message(text=_known_outage_text(covering))
                return reset

        if not await creation_allowed(REPAIR_TICKET, dispatcher, tracker, services):
            return reset
        zone = place.zone() if (account or place.names()) else "urban"
        minutes = services.settings.commitments.repair_arrival_minutes[zone]
        now = now_local()
        promised = now + dt.timedelta(minutes=minutes)
        ticket = await services.tickets.create_ticket(
            NewTicket(
                kind="repair",
                category=category,
                description=description,
                severity=severity,
                contact_phone=phone,
                account_number=account,
                address=address or place.address,
                area=place.most_specific() or place.named,
                conversation_id=conversation_id(tracker),
                promised_by=promised.isoformat(timespec="seconds"),
            )
        )
        promised_by = as_local(getattr(ticket, "promised_by", None)) or promised
        when = f"{promised_by:%H:%M}" if promised_by.date() == now.date() else (
            f"{describe_day(promised_by, now.date())}{promised_by:%H:%M}"
        )
        lines = [
            f"已为您登记抢修工单，工单号：{ticket.ticket_id}。",
            f"故障地址：{address or place.address or '（未提供）'}",
            f"紧急程度：{SEVERITY_LABELS[severity]}",
        ]
        if phone:
            lines.append(f"联系电话：{mask_phone(phone)}")
        lines.append(
            f"按照{ZONE_LABELS[zone]}抢修人员{minutes}分钟内到达现场的服务承诺，"
            f"抢修人员预计在{when}前到达，到达前会与您电话联系，请保持电话畅通。"
        )
        if severity == URGENT:
            lines.append(f"在抢修人员到达前，请继续远离危险区域，不要触碰；如情况恶化请立即拨打{HOTLINE}。")
        if severity == URGENT and handoff_settings().on_urgent_fault:
            await request_handoff(tracker, services, trigger="urgent_fault", reason=mask_text(
                f"紧急故障报修，工单{ticket.ticket_id}：{description}")[:MAX_REASON_CHARS])
            lines.append("因情况紧急，已同时为您转接人工客服，请稍候。")
        lines.append("您可以随时凭工单号向我查询处理进度。")
        dispatcher.utter_message(text="\n".join(lines))
        return reset


def _category_for(severity: str) -> str:
    return {URGENT: "safety_hazard", HIGH: "area_outage"}.get(severity, "household_outage")
