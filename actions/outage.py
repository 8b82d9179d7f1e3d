"""Outage queries (停电查询).

``action_query_outage`` lists planned and ongoing outages for the area the customer named or,
with none named, for the bound 户号's address; after an outage notice (message metadata, see
actions/notice_context.py) a question naming no area is answered about THAT outage, fresh from
the backend by its id (restored, ongoing with its expected restoration, or still planned).
``query_outage_form`` asks for an area only when the customer named none, has no bound 户号
and asks about no notice. How an outage is told to a customer (:func:`describe_outage`) is
shared with the fault report (actions/fault_report.py), which first checks whether a known
outage explains the fault.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Iterable, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.clock import as_local, describe_day, describe_moment, now_local
from actions.common import (
    BackendAction,
    BackendFormValidationAction,
    EventList,
    Services,
    bound_account,
    buttons,
)
from actions.constants import HOTLINE
from actions.entities import entity_values
from actions.notice_context import NoticeContext, notice_of
from actions.places import area_query, place_from_text
from actions.text import normalize
from integrations.errors import NotFound
from integrations.masking import mask_account

logger = logging.getLogger(__name__)

MAX_OUTAGES_SHOWN = 5


# --- outage texts ------------------------------------------------------------------------------

def describe_window(start: Optional[dt.datetime], end: Optional[dt.datetime], today: dt.date) -> str:
    """``11月25日（明天）08:00至18:00`` or across days ``…22:00至11月26日（后天）06:00``."""
    if start is None and end is None:
        return "时间待定"
    if start is None:
        return f"至{describe_day(end, today)}{end:%H:%M}"
    text = f"{describe_day(start, today)}{start:%H:%M}"
    if end is None:
        return text + "起，恢复时间待定"
    if end.date() == start.date():
        return f"{text}至{end:%H:%M}"
    return f"{text}至{describe_day(end, today)}{end:%H:%M}"


def _outage_place(outage: Any) -> str:
    parts = [p for p in (outage.district, outage.street, outage.community) if p]
    place = "".join(parts)
    affected = getattr(outage, "affected_area", None)
    if affected and outage.community and affected.startswith(outage.community):
        return "".join(p for p in (outage.district, outage.street) if p) + affected
    if affected and affected not in place:
        place = f"{place}（{affected}）" if place else affected
    return place or "相关区域"


def is_ongoing(outage: Any) -> bool:
    """Whether the outage is happening now (not only planned)."""
    return outage.status == "ongoing"


def describe_outage(outage: Any, today: dt.date) -> str:
    """One outage for the customer: kind, place, reason, window / expected restoration."""
    start, end = as_local(outage.start_time), as_local(outage.end_time)
    kind = "计划检修停电" if outage.kind == "planned" else "故障停电"
    reason = outage.reason or "原因正在核实"
    if is_ongoing(outage):
        restore = f"{describe_day(end, today)}{end:%H:%M}" if end else "正在抢修，恢复时间待定"
        since = f"{describe_day(start, today)}{start:%H:%M}" if start else "不久前"
        return (
            f"【正在停电·{kind}】{_outage_place(outage)}\n"
            f"停电原因：{reason}\n停电开始：{since}\n预计恢复供电：{restore}"
        )
    return (
        f"【{kind}·尚未开始】{_outage_place(outage)}\n"
        f"停电原因：{reason}\n停电时间：{describe_window(start, end, today)}"
    )


def sorted_outages(outages: Iterable[Any]) -> list[Any]:
    """Ongoing outages first, then by start time."""
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return sorted(
        outages,
        key=lambda o: (0 if is_ongoing(o) else 1, as_local(o.start_time) or far),
    )


def _relevant(outages: Iterable[Any]) -> list[Any]:
    """Outages a customer still cares about (the backend's ``active`` may include restored)."""
    return [o for o in outages if o.status in ("scheduled", "ongoing")]


# --- query_outage ------------------------------------------------------------------------------

class ValidateQueryOutageForm(BackendFormValidationAction):
    """Asks for an area only when the customer named none and has no bound 户号."""

    def name(self) -> str:
        return "validate_query_outage_form"

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        # Must not depend on the area slot itself: rasa-sdk drops extracted slots that are not
        # required any more. With ["area"] Rasa asks only when the slot is still empty.
        if await bound_account(tracker, self.services) or _about_notice_outage(tracker):
            return []
        return ["area"]

    async def extract_area(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Take an area name typed as an answer even when the NLU found no entity in it."""
        if tracker.get_slot("requested_slot") != "area" or entity_values(tracker, "area"):
            return {}
        text = normalize(tracker.latest_message.get("text"))
        if not text or text.startswith("/"):
            return {}
        areas = await self.services.outage.list_areas()
        place = place_from_text(text, areas)
        if place.most_specific():
            return {"area": place.most_specific()}
        return {}

    async def validate_area(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        area = normalize(str(value or ""))
        if len(area) < 2:
            dispatcher.utter_message(
                text="抱歉，没能识别出您说的区域。请告诉我区、街道、社区或道路名称，例如“东山街道”。"
            )
            return {"area": None}
        return {"area": area}


class ActionAskQueryOutageFormArea(BackendAction):
    """Asks for the area, offering the districts the backend knows as buttons."""

    def name(self) -> str:
        return "action_ask_query_outage_form_area"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        districts: list[str] = []
        try:
            for area in await services.outage.list_areas():
                if area.district and area.district not in districts:
                    districts.append(area.district)
        except Exception:  # noqa: BLE001 - the question works without buttons
            logger.warning("could not list areas for the area question", exc_info=True)
        dispatcher.utter_message(
            response="utter_ask_query_outage_form_area",
            buttons=buttons(*((d, f'/inform{{"area":"{d}"}}') for d in districts[:8])),
        )
        return []


# --- replies to an outage notice ----------------------------------------------------------------

def _about_notice_outage(tracker: Tracker) -> Optional[NoticeContext]:
    """The outage notice the question is about: one is in the metadata and no area is named."""
    notice = notice_of(tracker)
    if notice is None or not notice.is_outage or entity_values(tracker, "area"):
        return None
    return notice


async def notice_outage_reply(services: Services, notice: NoticeContext) -> Optional[str]:
    """THAT outage now (restored, ongoing with the expected restoration, or still planned);
    None when the notice names no outage the backend knows."""
    outage_id = notice.outage_id
    if not outage_id:
        return None
    try:
        outage = await services.outage.get_outage(outage_id)
    except NotFound:
        logger.info("notice outage %s not found", outage_id[:20])
        return None
    today = now_local().date()
    if outage.status == "restored":
        place = notice.params.get("community") or outage.community or outage.affected_area
        return (f"您好，您收到通知的{place}停电已经恢复供电。\n"
                "如果您家里仍然没电，请先检查家中的漏电保护器和空气开关是否跳闸；"
                f"仍无法恢复的话，可以直接向我报修，或拨打{HOTLINE}。")
    if outage.status == "ongoing":
        return (f"您好，您收到通知的停电目前仍在进行：\n{describe_outage(outage, today)}\n"
                "抢修人员正在全力工作，恢复供电后无需另行报修；如果到了预计时间仍未来电，"
                f"或发现电线掉落、冒烟等危险情况，请及时告诉我或拨打{HOTLINE}。")
    end = as_local(outage.end_time)
    restore = f"，预计{describe_moment(end, today)}恢复供电" if end else ""
    return (f"您好，您收到通知的停电尚未开始{restore}：\n{describe_outage(outage, today)}\n"
            "请您提前做好准备，停电期间注意关闭大功率电器，来电后再使用。")


UNKNOWN_AREA_BUTTONS = buttons(("绑定户号查询", "/bind_account"), ("我要报修", "/report_fault"))


def unknown_area_text(area: str) -> str:
    """The honest answer for a place the outage backend does not know, with the next steps."""
    return (f"抱歉，没有查到“{area}”的停电信息，可能是我暂时无法识别这个地点。\n"
            "您可以告诉我所在的区、街道或社区名称（例如“东山街道停电吗”），"
            "或绑定户号按您的用电地址查询。如果您家里现在没有电，可以直接向我报修，"
            f"或拨打{HOTLINE}供电服务热线。")


async def _known_area(services: Services, area: str) -> bool:
    """Whether the backend's areas include the place (district, street or community named)."""
    return place_from_text(area, await services.outage.list_areas()).most_specific() is not None


# Each outage query names its own area (or uses the bound 户号); an area left in the slot would
# silently answer the next "停电吗" for the old place.
_AREA_CONSUMED: EventList = [SlotSet("area", None)]


class ActionQueryOutage(BackendAction):
    """Planned and ongoing outages for the named area, else for the bound 户号's address."""

    def name(self) -> str:
        return "action_query_outage"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        notice = _about_notice_outage(tracker)
        answer = await notice_outage_reply(services, notice) if notice else None
        if answer:
            dispatcher.utter_message(text=answer, buttons=buttons(("我要报修", "/report_fault")))
            return _AREA_CONSUMED
        # A one-character "area" (a bare suffix such as 路 cut from a road name) names nothing.
        area = area_query([a for a in entity_values(tracker, "area") if len(normalize(a)) >= 2])
        account = None if area else await bound_account(tracker, services)
        if not area and not account:
            area = normalize(tracker.get_slot("area")) or None
        if not area and not account:
            dispatcher.utter_message(response="utter_ask_query_outage_form_area")
            return []

        if area:
            outages = await services.outage.find_outages(area=area, status="active")
            place = f"“{area}”"
        else:
            outages = await services.outage.find_outages(account_number=account, status="active")
            place = f"您绑定的户号（{mask_account(account)}）所在区域"
        outages = sorted_outages(_relevant(outages))
        notice_days = services.settings.commitments.planned_outage_notice_days

        if not outages and area and not await _known_area(services, area):
            # The backend knows no such place: say so, never "no outage there".
            dispatcher.utter_message(text=unknown_area_text(area), buttons=UNKNOWN_AREA_BUTTONS)
            return _AREA_CONSUMED

        if not outages:
            dispatcher.utter_message(
                text=(
                    f"经查询，{place}目前没有正在进行的停电，未来{notice_days}天内也没有计划停电安排"
                    f"（计划停电我们会至少提前{notice_days}天公告）。\n"
                    "如果您家里现在没有电，可能是户内开关跳闸或线路故障，建议先检查家中的漏电保护器和空气开关；"
                    "仍无法恢复的话，可以直接向我报修。"
                ),
                buttons=buttons(("我要报修", "/report_fault"),),
            )
            return _AREA_CONSUMED

        today = now_local().date()
        shown = outages[:MAX_OUTAGES_SHOWN]
        ongoing = sum(1 for o in outages if is_ongoing(o))
        head = f"为您查到{place}有{len(outages)}条停电信息"
        if ongoing:
            head += f"，其中{ongoing}条正在停电"
        head += "：" if len(outages) <= MAX_OUTAGES_SHOWN else f"，以下是最近的{MAX_OUTAGES_SHOWN}条："
        body = "\n\n".join(describe_outage(o, today) for o in shown)
        tail = (
            "\n\n给您带来不便，敬请谅解。抢修人员正在全力工作，恢复供电后无需另行报修；"
            f"如果到了预计时间仍未来电，或发现电线掉落、冒烟等危险情况，请及时告诉我或拨打{HOTLINE}。"
            if ongoing
            else "\n\n请您提前做好准备，停电期间注意关闭大功率电器，来电后再使用。"
        )
        tail += "\n如需查询其他区域，直接告诉我区域名称即可，例如“秣陵街道停电吗”。"
        dispatcher.utter_message(
            text=f"{head}\n\n{body}{tail}",
            buttons=buttons(("订阅停电提醒", "/subscribe_reminder"), ("我要报修", "/report_fault")),
        )
        return _AREA_CONSUMED
