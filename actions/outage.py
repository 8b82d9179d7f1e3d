"""Outage queries and fault reports (停电查询 / 故障报修).

``action_query_outage`` lists planned and ongoing outages for the area the customer named or,
with none named, for the bound 户号's address. ``action_check_fault_outage`` starts every fault
report: it grades the report, gives safety advice first for hazards, and checks whether an
ongoing outage already explains the fault (then no ticket is opened). ``report_fault_form``
collects what a repair crew needs and ``action_submit_fault_report`` opens the repair ticket
with a promised arrival time taken from the service commitments.

Service zone (urban / rural / remote) decides the promised arrival time. The backends carry
no zone field, so :func:`service_zone` derives it from Chinese administrative names, which
encode it: a village (村, but not the urban estates called 新村), town (镇), township (乡) or farm
(农场) is rural; mountain, forest, pastoral and island areas (山区, 林区, 林场, 牧区, 海岛, 边远,
偏远) are remote; anything else is urban. When the zone cannot be decided from the place the
promise uses the urban figure, the strictest one, so a customer is never promised less.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Optional
from zoneinfo import ZoneInfo

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    BackendAction,
    BackendFormValidationAction,
    EventList,
    Services,
    bound_account,
    buttons,
    conversation_id,
)
from actions.creation_limits import REPAIR_TICKET, creation_allowed
from integrations.masking import mask_account, mask_phone
from integrations.tickets import NewTicket

logger = logging.getLogger(__name__)

HOTLINE = "95598"
MAX_OUTAGES_SHOWN = 5

# --- grading ---------------------------------------------------------------------------------

URGENT = "urgent"
HIGH = "high"
NORMAL = "normal"
_SEVERITY_RANK = {NORMAL: 0, HIGH: 1, URGENT: 2}
SEVERITY_LABELS = {URGENT: "紧急（安全隐患）", HIGH: "较急（多户停电）", NORMAL: "一般"}

# Safety hazards: smoke, fire, sparks, fallen or broken lines, electric shock, leakage.
# "漏电保护器"/"漏保" is the household RCD, not a leak, so it is cut out before matching.
_HAZARD_PATTERNS = [
    re.compile(p)
    for p in (
        r"冒烟|起烟|烟雾|有烟",
        r"着火|起火|失火|火灾|燃烧|烧起来|冒火|火苗|明火",
        r"火花|火星|打火|拉弧|电弧",
        r"断线|线.{0,4}(断|掉|落|垂|倒|裸露|露出|耷拉)",
        r"(掉|落|垂)(在|到)?(地|路)",
        r"触电|被电|电到|电人|电了一下|麻手|手麻|麻麻",
        r"漏电",
        r"(电杆|杆子|线杆|电线杆).{0,4}(倒|歪|断|斜)",
        r"爆炸|炸了|爆了",
        r"烧焦|焦味|糊味|烧黑|烧化|烧熔",
    )
]
_RCD_WORDS = re.compile(r"漏电保护器?|漏电开关|漏电断路器|漏保")
# Many households / a whole building or area without power.
_WIDE_OUTAGE = re.compile(
    r"整栋|整幢|整个楼|全楼|整楼|楼里|楼上楼下|整个单元|全单元|单元都|整个小区|全小区|小区都|"
    r"一片|片区|整条街|整排|一条街|整个村|村里|全村|好几户|好多户|几户|多户|大面积|"
    r"邻居(家)?也|邻居(家)?都没|周围都|附近都|都停了|变压器|电梯也"
)
_TRIPPED = re.compile(r"跳闸|跳了|空开|空气开关|总闸|闸.{0,3}(合|推)不上|漏电保护|漏保|保险丝")


@dataclass(frozen=True)
class FaultGrade:
    """How urgent a fault report is, its category and whether self-help applies."""

    severity: str
    category: str
    tripped: bool


def grade_fault(text: str) -> FaultGrade:
    """Grade a fault description: urgent for safety hazards, high for many households,
    normal for one household (a tripped breaker gets self-help advice as well)."""
    text = normalize(text)
    tripped = bool(_TRIPPED.search(text))
    hazard_text = _RCD_WORDS.sub("", text)
    if any(p.search(hazard_text) for p in _HAZARD_PATTERNS):
        return FaultGrade(URGENT, "safety_hazard", tripped)
    if _WIDE_OUTAGE.search(text):
        return FaultGrade(HIGH, "area_outage", tripped)
    if tripped:
        return FaultGrade(NORMAL, "tripped_breaker", True)
    if re.search(r"电压|忽明忽暗|一闪一闪|闪烁|缺相|电压低|电压高", text):
        return FaultGrade(NORMAL, "voltage", False)
    if re.search(r"电表|表计|不走字|表不亮", text):
        return FaultGrade(NORMAL, "meter", False)
    return FaultGrade(NORMAL, "household_outage", False)


def max_severity(*severities: Optional[str]) -> str:
    """The most urgent of the given severities (unknown values count as normal)."""
    known = [s for s in severities if s in _SEVERITY_RANK]
    return max(known, key=_SEVERITY_RANK.__getitem__, default=NORMAL)


def safety_advice() -> str:
    """What to do right now around a hazard; always the first thing said about one."""
    return (
        "⚠️安全提示：请立即远离故障点，与冒烟、着火的设备或掉落的电线保持至少10米的安全距离，"
        "不要触碰，也不要让老人和孩子靠近；如果是家中设备冒烟着火，在确保自身安全的前提下先拉闸断电，"
        "切勿用水扑救电气火灾；有人触电时不要直接用手拉人，应先断开电源。"
        f"情况紧急请立即拨打{HOTLINE}供电服务热线（发生火灾请同时拨打119）。"
    )


def self_help_tripped() -> str:
    """Self-help for a tripped household breaker: check the residual-current device first."""
    return (
        "温馨提示：如果是家里跳闸，请先检查户内配电箱的漏电保护器（漏保）和空气开关："
        "先断开各分路开关、拔下大功率电器插头，再合上总闸，然后逐路合上分路开关。"
        "如果合上某一路就跳，多半是这一路的电器或线路漏电，请停用该电器并联系电工检修；"
        "如果总闸始终合不上，或您家电表不亮，我来为您安排报修。"
    )


# --- places ------------------------------------------------------------------------------------

_AREA_SUFFIXES = ("街道办事处", "街道", "社区", "新区", "区", "镇", "乡", "村", "路", "大道", "街")
_REMOTE = re.compile(r"山区|林区|林场|牧区|牧场|海岛|岛上|边远|偏远")
_RURAL = re.compile(r"(?<!新)村|镇|乡(?!村振兴)|农场|村民小组")

ZONE_LABELS = {"urban": "城区", "rural": "农村地区", "remote": "特殊边远地区"}


def normalize(text: Optional[str]) -> str:
    """NFKC (full-width digits and letters to ASCII) and trimmed."""
    return unicodedata.normalize("NFKC", text or "").strip()


def service_zone(*places: Optional[str]) -> str:
    """``"urban"``, ``"rural"`` or ``"remote"`` from the names of a place (see module doc)."""
    text = " ".join(normalize(p) for p in places if p)
    if _REMOTE.search(text):
        return "remote"
    if _RURAL.search(text):
        return "rural"
    return "urban"


def _stem(name: str) -> str:
    for suffix in _AREA_SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class Place:
    """Where the customer is, as far as we know (any part may be unknown)."""

    district: Optional[str] = None
    street: Optional[str] = None
    community: Optional[str] = None
    address: Optional[str] = None
    # what the customer named when it is not a known area (a road, say): the backend matches it
    named: Optional[str] = None

    def names(self) -> list[str]:
        return [n for n in (self.district, self.street, self.community, self.address) if n]

    def most_specific(self) -> Optional[str]:
        return self.community or self.street or self.district

    def zone(self) -> str:
        return service_zone(*self.names())


def place_from_text(text: str, areas: Iterable[Any]) -> Place:
    """The known district/street/community named in ``text`` (names matched suffix-tolerantly).

    ``areas`` are the backend's areas (objects with district, street, community). A community
    wins over a street, a street over a district; the parents of the winner are filled in.
    """
    text = normalize(text)
    best: Optional[Place] = None
    best_rank = 0
    for area in areas:
        district, street, community = area.district, area.street, area.community
        hits = [bool(n) and _stem(n) in text for n in (district, street, community)]
        # a community or street name alone must not be a two-letter accident inside a word
        rank = 3 if hits[2] else 2 if hits[1] else 1 if hits[0] else 0
        if rank > best_rank:
            best_rank = rank
            best = Place(
                district=district,
                street=street if rank >= 2 else None,
                community=community if rank == 3 else None,
                address=text,
            )
    return best or Place(address=text or None)


def outage_covers(outage: Any, place: Place) -> bool:
    """Whether an outage reaches the place: no level both know may differ."""
    for level in ("district", "street", "community"):
        theirs, ours = getattr(outage, level, None), getattr(place, level)
        if theirs and ours and _stem(theirs) != _stem(ours):
            return False
    return True


# --- times -------------------------------------------------------------------------------------

def local_tz() -> ZoneInfo:
    """The utility's local time zone (POWERDESK_TIMEZONE, default Asia/Shanghai)."""
    return ZoneInfo(os.environ.get("POWERDESK_TIMEZONE", "Asia/Shanghai"))


def now_local() -> dt.datetime:
    return dt.datetime.now(local_tz())


def as_datetime(value: Any) -> Optional[dt.datetime]:
    """A timezone-aware local datetime from a datetime or an ISO-8601 string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=local_tz())
    return value.astimezone(local_tz())


def describe_day(moment: dt.datetime, today: dt.date) -> str:
    """``11月25日（明天）``: month and day, with 今天/明天/后天/昨天 when close."""
    names = {-1: "昨天", 0: "今天", 1: "明天", 2: "后天"}
    label = f"{moment.month}月{moment.day}日"
    relative = names.get((moment.date() - today).days)
    return f"{label}（{relative}）" if relative else label


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


# --- outage texts ------------------------------------------------------------------------------

def _outage_place(outage: Any) -> str:
    parts = [p for p in (outage.district, outage.street, outage.community) if p]
    place = "".join(parts)
    affected = getattr(outage, "affected_area", None)
    if affected and outage.community and affected.startswith(outage.community):
        return "".join(p for p in (outage.district, outage.street) if p) + affected
    if affected and affected not in place:
        place = f"{place}（{affected}）" if place else affected
    return place or "相关区域"


def _is_ongoing(outage: Any) -> bool:
    return outage.status == "ongoing"


def describe_outage(outage: Any, today: dt.date) -> str:
    """One outage for the customer: kind, place, reason, window / expected restoration."""
    start, end = as_datetime(outage.start_time), as_datetime(outage.end_time)
    kind = "计划检修停电" if outage.kind == "planned" else "故障停电"
    reason = outage.reason or "原因正在核实"
    if _is_ongoing(outage):
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


def _sorted_outages(outages: Iterable[Any]) -> list[Any]:
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return sorted(
        outages,
        key=lambda o: (0 if _is_ongoing(o) else 1, as_datetime(o.start_time) or far),
    )


def _relevant(outages: Iterable[Any]) -> list[Any]:
    """Outages a customer still cares about (the backend's ``active`` may include restored)."""
    return [o for o in outages if o.status in ("scheduled", "ongoing")]


def _latest_entity(tracker: Tracker, name: str) -> list[str]:
    values = []
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == name and entity.get("value"):
            value = normalize(str(entity["value"]))
            if value and value not in values:
                values.append(value)
    return values


def _area_query(values: list[str]) -> Optional[str]:
    """The area to ask the backend for when the customer named several (the last is the most
    specific in Chinese order: 江宁区东山街道 → 东山街道)."""
    return values[-1] if values else None


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
        if await bound_account(tracker, self.services):
            return []
        return ["area"]

    async def extract_area(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Take an area name typed as an answer even when the NLU found no entity in it."""
        if tracker.get_slot("requested_slot") != "area" or _latest_entity(tracker, "area"):
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


# Each outage query names its own area (or uses the bound 户号); an area left in the slot would
# silently answer the next "停电吗" for the old place.
_AREA_CONSUMED: EventList = [SlotSet("area", None)]


class ActionQueryOutage(BackendAction):
    """Planned and ongoing outages for the named area, else for the bound 户号's address."""

    def name(self) -> str:
        return "action_query_outage"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        area = _area_query(_latest_entity(tracker, "area"))
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
        outages = _sorted_outages(_relevant(outages))
        notice_days = services.settings.commitments.planned_outage_notice_days

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
        ongoing = sum(1 for o in outages if _is_ongoing(o))
        head = f"为您查到{place}有{len(outages)}条停电信息"
        if ongoing:
            head += f"，其中{ongoing}条正在停电"
        head += "：" if len(outages) <= MAX_OUTAGES_SHOWN else f"，以下是最近的{MAX_OUTAGES_SHOWN}条："
        body = "\n\n".join(describe_outage(o, today) for o in shown)
        tail = (
            "\n\n给您带来不便，敬请谅解。抢修人员正在全力工作，恢复供电后无需另行报修；"
            "如果到了预计时间仍未来电，或发现电线掉落、冒烟等危险情况，请及时告诉我或拨打95598。"
            if ongoing
            else "\n\n请您提前做好准备，停电期间注意关闭大功率电器，来电后再使用。"
        )
        tail += "\n如需查询其他区域，直接告诉我区域名称即可，例如“秣陵街道停电吗”。"
        dispatcher.utter_message(
            text=f"{head}\n\n{body}{tail}",
            buttons=buttons(("订阅停电提醒", "/subscribe_reminder"), ("我要报修", "/report_fault")),
        )
        return _AREA_CONSUMED


# --- report_fault ------------------------------------------------------------------------------

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
    named = _latest_entity(tracker, "area")
    said = " ".join(filter(None, [address_text, *named]))
    if not said:
        return Place()
    place = place_from_text(said, await services.outage.list_areas())
    if named and not place.most_specific():
        place = Place(address=place.address, named=_area_query(named))
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
    return _sorted_outages(o for o in found if _is_ongoing(o))


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


_PHONE = re.compile(r"(?<!\d)(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})(?!\d)")


def find_phone(text: str) -> Optional[str]:
    """A mainland mobile or landline number in the text (full-width digits allowed)."""
    match = _PHONE.search(normalize(text).replace(" ", ""))
    return match.group(1) if match else None


class ValidateReportFaultForm(BackendFormValidationAction):
    """Checks the description (grading it; safety advice at once for a hazard), the address
    and the contact phone of a fault report."""

    def name(self) -> str:
        return "validate_report_fault_form"

    async def extract_phone(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "phone" or _latest_entity(tracker, "phone"):
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
        promised_by = as_datetime(getattr(ticket, "promised_by", None)) or promised
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
        lines.append("您可以随时凭工单号向我查询处理进度。")
        dispatcher.utter_message(text="\n".join(lines))
        return reset


def _category_for(severity: str) -> str:
    return {URGENT: "safety_hazard", HIGH: "area_outage"}.get(severity, "household_outage")
