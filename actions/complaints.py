"""Complaints and suggestions (投诉建议) and their follow-up.

``action_start_complaint`` answers every ``complain`` message. A follow-up (a TS…/GD… ticket id,
or words such as 进度 / 处理得怎么样了 / 有结果了吗) gets the ticket's status and history at once.
Anything else is a new complaint: an angry customer hears an apology first, what the first
message already says (description, category, a phone number) is kept, and ``complaint_form``
asks for the rest: what happened, the category (buttons) and a contact. With a bound 户号 the
contact may be the phone on file, which is never shown (no backend returns it; the ticket
carries the 户号 and staff look the number up). ``action_submit_complaint`` opens the ticket
(kind ``complaint``) with the promised contact time from the service commitments
(``complaint_ack_working_days`` Chinese working days, chinese_calendar).

Severity grading (:func:`grade_complaint`), from the description, the category and the first
message:

* ``urgent`` - a danger to life right now: fire, smoke, sparks, electric shock, live lines on the
  ground, or life-support equipment (制氧机, 呼吸机, 透析) without power. The customer is also
  told to call 95598 / report the fault at once.
* ``high`` - repeated outages (category 停电频繁 or words like 三天两头/经常停电/又停电/停了五次),
  a latent safety hazard (安全隐患, 很危险, 出了事谁负责), a threat to go to the media or a regulator
  (记者, 曝光, 抖音, 12345, 12398, 能源局, 上访, 起诉 …), or very angry language (insults, or two
  or more anger markers such as 气死/忍无可忍/！！！).
* ``low`` - a suggestion (建议 / 提个意见) with no complaint in it.
* ``normal`` - everything else.

Follow-ups are answered by actions/tickets.py (only to the ticket's owner).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Optional

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
from actions.clock import describe_moment, now_local
from actions.constants import HOTLINE
from actions.creation_limits import COMPLAINT, creation_allowed
from actions.entities import first_entity_value
from actions.handoff import MAX_REASON_CHARS, handoff_settings, request_handoff
from actions.phones import find_phone
from actions.settings import add_working_days
from actions.severity import max_severity
from actions.text import normalize
from actions.tickets import answer_ticket_status, find_ticket_id
from integrations.masking import mask_account, mask_phone, mask_text

logger = logging.getLogger(__name__)

ON_FILE = "on_file"
# The customer said no to "需要使用这个号码吗？" (the phone on file): ask for another number.
DECLINED = "declined"
OFFERED_SLOT = "complaint_contact_offered"
APOLOGY_MARK = "非常抱歉"

CATEGORIES = ("服务态度", "停电频繁", "电费争议", "抢修超时", "业务办理慢", "电压质量", "其他")

SEVERITY_LABELS = {"urgent": "紧急", "high": "优先处理", "normal": "一般", "low": "建议"}

# --- grading -----------------------------------------------------------------------------------

_DANGER = re.compile(
    r"冒烟|起火|着火|失火|火花|打火|触电|被电(到|了)|电到人|"
    r"电线.{0,4}(断了|掉(在|到|下)|落地|在地上)|掉在地上|爆炸|"
    r"(制氧机|呼吸机|透析).{0,12}(停|没电|断电|用不了)|(停电|没电|断电).{0,12}(制氧机|呼吸机|透析)"
)
_HAZARD = re.compile(r"安全隐患|很危险|太危险|危险|出了事|出事|漏电(?!保护)|垂得很低|电线.{0,4}(低|垂|裸露)")
_REPEATED_OUTAGE = re.compile(
    r"三天两头|经常停电|频繁停电|停电频繁|老是停电|总是停电|天天停电|反复停电|动不动就?停电|"
    r"又停电|又停了|又断电|停了(好几|[二两三四五六七八九十\d]+)(次|回)|[二两三四五六七八九十\d]+(次|回)停电|"
    r"断了[二两三四五六七八九十\d]+(次|回)"
)
_ESCALATION = re.compile(
    r"媒体|记者|曝光|电视台|报社|报纸|抖音|快手|微博|朋友圈|发到网上|网上发|发帖|热搜|"
    r"12345|市长热线|12398|能源局|监管|上访|信访|起诉|告你们|法院|律师|消协|315|总部"
)
_INSULT = re.compile(
    r"垃圾|破服务|废物|无能|混蛋|王八|他妈|妈的|tmd|TMD|傻[逼bB]|干什么吃的|吃干饭|"
    r"有没有良心|有没有人性|没有人性|不要脸|欺人太甚"
)
_ANGER = re.compile(
    r"气死|生气|愤怒|火大|受够|忍无可忍|太过分|过分|太差|恶劣|差劲|离谱|无语|"
    r"还让不让人|负不负责|到底管不管|到底有没有人管|说法|没完|凭什么|"
    r"[!！]{2,}|[?？]{2,}"
)
_SUGGESTION = re.compile(r"建议|提(个|点|些)?意见|提个醒|希望你们|能不能(改进|优化)")
_COMPLAINT_WORDS = re.compile(r"投诉|投述|投訴|投囑|不满|太差|恶劣|态度|超时|多收|乱收")

_CATEGORY_PATTERNS = {
    "服务态度": re.compile(
        r"态度|态渡|服物|爱答不理|不理人|不耐烦|没礼貌|不礼貌|吼|骂人|骂我|凶|玩手机|刁难|推诿|推脱|"
        r"请吃饭|索要|吃拿卡要"
    ),
    "停电频繁": _REPEATED_OUTAGE,
    "电费争议": re.compile(
        r"电费.{0,8}(不对|错|多|贵|高|翻倍|异议|离谱)|电废|多收|多扣|计费|抄错|估抄|"
        r"电表.{0,6}(快|不准|有问题)|用了.{0,6}度"
    ),
    "抢修超时": re.compile(
        r"(抢修|报修|修电|维修|电工).{0,16}(慢|没人来|不来|超时|还没|没见|没修好|好几个|几个小时|"
        r"几个钟头|等了|说好)|(等了|过了).{0,8}(小时|钟头).{0,10}(没人|没来)"
    ),
    "业务办理慢": re.compile(
        r"办理.{0,6}(慢|拖|效率)|跑了.{0,4}趟|拖拖拉拉|材料.{0,10}(还|又|让我)|审核.{0,8}(慢|还|一直)|"
        r"(新装|增容|过户|光伏|并网|报装|销户|更名).{0,20}(慢|没动静|没人|一直|还没)"
    ),
    "电压质量": re.compile(
        r"电压|忽明忽暗|一闪一闪|闪烁|灯.{0,4}暗|带不动|启动不了|煮不熟"
    ),
}

_GENERIC = re.compile(
    r"你好|您好|请问|麻烦|帮我|我要|我想|想要|需要|要|一下|投诉|投述|投訴|投囑|建议|意见|"
    r"反映|提个|提|你们|我|的|了|啊|呀|吧|呢|吗|哦|嗯|个|一|给|对|有|问题|[\s\W\d_]"
)
# A follow-up asks about an earlier complaint. Bare 进度/状态 are not enough ("新装进度太慢了，
# 我要投诉" is a new complaint): they count only as a question or next to 投诉/工单.
_FOLLOW_UP = re.compile(
    r"(投诉|工单|单子|反映).{0,8}(进度|进展|状态)|(进度|进展|状态)(查询|查一下|怎么样|如何|到哪)|"
    r"查.{0,4}(进度|进展|状态)|处理得?怎么样|处理到哪|处理了没|到哪一步|有结果|有回音|有消息|"
    r"有答复|答复了[吗没]|回复了[吗没]|解决了[吗没]|什么状态|上次投诉|之前投诉|之前反映|"
    r"投诉了.{0,6}(没人|还没|没有)"
)


@dataclass(frozen=True)
class ComplaintGrade:
    """How a complaint is handled: severity, anger (apology first) and whether it is a suggestion."""

    severity: str
    angry: bool
    suggestion: bool
    reasons: tuple[str, ...]


def grade_complaint(text: str, category: Optional[str] = None) -> ComplaintGrade:
    """Grade a complaint (see the module doc for the rules)."""
    plain = normalize(text)
    reasons: list[str] = []
    if _DANGER.search(plain):
        reasons.append("danger")
    if category == "停电频繁" or _REPEATED_OUTAGE.search(plain):
        reasons.append("repeated_outage")
    if _HAZARD.search(plain):
        reasons.append("hazard")
    if _ESCALATION.search(plain):
        reasons.append("escalation")
    insults = bool(_INSULT.search(plain))
    anger_markers = len(_ANGER.findall(plain))
    if insults or anger_markers >= 2:
        reasons.append("very_angry")
    angry = insults or anger_markers >= 1 or "escalation" in reasons
    suggestion = bool(_SUGGESTION.search(plain)) and not _COMPLAINT_WORDS.search(plain) and not angry
    if "danger" in reasons:
        severity = "urgent"
    elif reasons:
        severity = "high"
    elif suggestion:
        severity = "low"
    else:
        severity = "normal"
    return ComplaintGrade(severity, angry, suggestion, tuple(reasons))


def category_from_text(text: Optional[str]) -> Optional[str]:
    """The one category the text clearly names (a button title, or exactly one keyword match)."""
    plain = normalize(text)
    named = [name for name in CATEGORIES if name in plain]
    if len(named) == 1 and len(plain) <= len(named[0]) + 6:  # a button, or "选服务态度吧"
        return named[0]
    hits = [name for name, pattern in _CATEGORY_PATTERNS.items() if pattern.search(plain)]
    return hits[0] if len(hits) == 1 else None


def description_from_text(text: Optional[str]) -> Optional[str]:
    """The message itself as the description when it says more than "我要投诉"."""
    raw = (text or "").strip()
    plain = normalize(raw)
    if not plain or plain.startswith("/") or find_ticket_id(plain):
        return None
    return raw[:1000] if len(_GENERIC.sub("", plain)) >= 4 else None


def is_follow_up(text: Optional[str]) -> bool:
    """Whether a complain message asks about an earlier complaint rather than making one."""
    plain = normalize(text)
    return bool(find_ticket_id(plain) or _FOLLOW_UP.search(plain))


def apology_text(grade: ComplaintGrade) -> str:
    """The apology an angry customer hears before anything else."""
    text = (
        f"{APOLOGY_MARK}给您带来了这么不好的体验，您的心情我完全理解。"
        "您反映的问题由我负责为您登记并跟踪，一定会有专人给您答复。"
    )
    if "danger" in grade.reasons:
        text += safety_text()
    return text


def safety_text() -> str:
    return (
        f"如果现场有冒烟、着火、电线掉落或有人触电，请立即远离、不要触碰，并马上拨打{HOTLINE}"
        "（发生火灾请同时拨打119），也可以直接对我说“报修”。"
    )


# --- actions -----------------------------------------------------------------------------------

_FORM_SLOTS = ("complaint_description", "complaint_category", "complaint_contact", "complaint_severity",
               OFFERED_SLOT)


class ActionStartComplaint(BackendAction):
    """Routes a complain message: follow-up status, or a new complaint (see module doc)."""

    def name(self) -> str:
        return "action_start_complaint"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        text = tracker.latest_message.get("text") or ""
        ticket_id = find_ticket_id(first_entity_value(tracker, "complaint_ticket")) or find_ticket_id(text)
        if ticket_id or is_follow_up(text):
            events = await answer_ticket_status(dispatcher, tracker, services, ticket_id)
            return events + [SlotSet("complaint_route", "status")]

        grade = grade_complaint(text)
        description = description_from_text(text)
        category = category_from_text(text) if description else None
        phone = find_phone(first_entity_value(tracker, "phone")) or find_phone(text)
        if grade.angry or grade.severity == "urgent":
            dispatcher.utter_message(text=apology_text(grade))
        elif grade.suggestion:
            dispatcher.utter_message(text="感谢您提出宝贵建议！我来为您登记，相关部门会认真研究。")
        elif description:
            dispatcher.utter_message(text="感谢您的反馈，您反映的问题由我负责为您登记并跟踪处理。")
        else:
            dispatcher.utter_message(text="您好，很抱歉给您带来不便。您反映的问题由我负责为您登记并跟踪处理。")
        return [
            SlotSet("complaint_description", description),
            SlotSet("complaint_category", category),
            SlotSet("complaint_contact", phone),
            SlotSet("complaint_severity", grade.severity),
            SlotSet(OFFERED_SLOT, False),
            SlotSet("complaint_route", "form"),
        ]


class ValidateComplaintForm(BackendFormValidationAction):
    """Checks the description (grading it), maps the category and checks the contact."""

    def name(self) -> str:
        return "validate_complaint_form"

    async def extract_complaint_contact(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """A phone number the NLU recognised counts as the answer whatever the intent; a no to
        the offer of the phone on file (a yes/no question) declines the offer, not the complaint."""
        if tracker.get_slot("requested_slot") != "complaint_contact":
            return {}
        phone = find_phone(first_entity_value(tracker, "phone"))
        if phone:
            return {"complaint_contact": phone}
        if tracker.get_slot(OFFERED_SLOT) and _latest_intent(tracker) == "deny":
            return {"complaint_contact": DECLINED}
        return {}

    async def validate_complaint_description(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = str(value or "").strip()
        plain = normalize(text)
        if len(re.sub(r"[\s\W\d_]", "", plain)) < 2 or plain.startswith("/"):
            dispatcher.utter_message(
                text="请用一两句话说说具体情况，例如“营业厅工作人员态度不好”或“这个月已经停电三次了”。"
            )
            return {"complaint_description": None}
        grade = grade_complaint(text)
        previous = tracker.get_slot("complaint_severity")
        if (grade.angry or grade.severity == "urgent") and not _apologised(tracker):
            dispatcher.utter_message(text=apology_text(grade))
        elif grade.severity == "urgent" and previous != "urgent":
            dispatcher.utter_message(text=safety_text())
        result: dict[str, Any] = {
            "complaint_description": text[:1000],
            "complaint_severity": max_severity(previous, grade.severity),
        }
        if not tracker.get_slot("complaint_category"):
            category = category_from_text(text)
            if category:
                result["complaint_category"] = category
        return result

    async def validate_complaint_category(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        category = category_from_text(str(value or ""))
        if category is None:
            dispatcher.utter_message(text="抱歉，没能对应到具体类别，请点击下面的按钮选择，不确定的话可以选“其他”。")
            return {"complaint_category": None}
        return {"complaint_category": category}

    async def validate_complaint_contact(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value == DECLINED:  # the question is asked again, without the offer
            return {"complaint_contact": None, OFFERED_SLOT: False}
        if value == ON_FILE:
            if await bound_account(tracker, self.services):
                return {"complaint_contact": ON_FILE}
            dispatcher.utter_message(text="您当前没有绑定户号，请直接输入您的手机号码或带区号的固定电话。")
            return {"complaint_contact": None}
        phone = find_phone(str(value or ""))
        if not phone:
            dispatcher.utter_message(text="抱歉，这个号码好像不对。请输入11位手机号码，或带区号的固定电话。")
            return {"complaint_contact": None}
        return {"complaint_contact": phone}


def _latest_intent(tracker: Tracker) -> Optional[str]:
    return (tracker.latest_message.get("intent") or {}).get("name")


def _apologised(tracker: Tracker) -> bool:
    """Whether the assistant already apologised in this complaint (since the complain message)."""
    for event in reversed(tracker.events or []):
        if event.get("event") == "bot" and APOLOGY_MARK in (event.get("text") or ""):
            return True
        if event.get("event") == "user" and (event.get("parse_data") or {}).get(
            "intent", {}
        ).get("name") == "complain":
            return False
    return False


class ActionAskComplaintContact(BackendAction):
    """Asks for a contact; with a bound 户号 offers its phone on file (never shown), a yes/no
    question (``complaint_contact_offered``). After a no to the offer it asks for another number."""

    def name(self) -> str:
        return "action_ask_complaint_form_complaint_contact"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        if _latest_intent(tracker) == "deny":
            dispatcher.utter_message(
                text="好的，请输入您希望工作人员联系您的手机号码，或带区号的固定电话。")
            return [SlotSet(OFFERED_SLOT, False)]
        account = await bound_account(tracker, services)
        if account:
            dispatcher.utter_message(
                text=f"工作人员可以通过您绑定的户号（{mask_account(account)}）登记的手机号与您联系，"
                     "需要使用这个号码吗？如需使用其他号码，请直接输入。",
                buttons=buttons(("使用登记的手机号", "/affirm"), ("使用其他号码", "/deny")),
            )
            return [SlotSet(OFFERED_SLOT, True)]
        dispatcher.utter_message(response="utter_ask_complaint_form_complaint_contact")
        return [SlotSet(OFFERED_SLOT, False)]


class ActionSubmitComplaint(BackendAction):
    """Opens the complaint ticket with its severity and promised contact time."""

    def name(self) -> str:
        return "action_submit_complaint"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        from integrations.tickets import NewTicket

        done = [SlotSet(slot, None) for slot in _FORM_SLOTS] + [SlotSet("complaint_route", None)]
        if not await creation_allowed(COMPLAINT, dispatcher, tracker, services):
            return done
        description = tracker.get_slot("complaint_description") or ""
        category = tracker.get_slot("complaint_category") or "其他"
        contact = tracker.get_slot("complaint_contact")
        account = await bound_account(tracker, services)
        grade = grade_complaint(description, category)
        severity = max_severity(tracker.get_slot("complaint_severity"), grade.severity)
        if severity == "low" and category != "其他":
            severity = "normal"  # a "suggestion" filed under a complaint category is a complaint
        phone = None if contact == ON_FILE else find_phone(contact)
        ack_days = services.settings.commitments.complaint_ack_working_days
        now = now_local().replace(microsecond=0)
        promised = add_working_days(now, ack_days)
        ticket = await services.tickets.create_ticket(
            NewTicket(
                kind="complaint",
                category=category,
                description=description[:1000],
                severity=severity,
                contact_phone=phone,
                account_number=account,
                conversation_id=conversation_id(tracker),
                promised_by=promised.isoformat(timespec="seconds"),
            )
        )
        promised_by = ticket.promised_by or promised
        if phone:
            contact_text = f"联系电话：{mask_phone(phone)}"
        elif account:
            contact_text = f"联系电话：户号{mask_account(account)}登记的手机号"
        else:
            contact_text = "联系方式：本会话"
        lines = [
            f"已为您登记{'建议' if severity == 'low' else '投诉'}，工单号：{ticket.ticket_id}，请您记好。",
            f"问题类别：{category}",
            f"处理级别：{SEVERITY_LABELS[severity]}",
            contact_text,
            f"按照我们的服务承诺，工作人员会在{ack_days}个工作日内、"
            f"即{describe_moment(promised_by, now.date())}前与您联系，并跟进处理直至办结。",
        ]
        if severity == "urgent":
            lines.append(safety_text())
        elif severity == "high":
            lines.append("您的问题已标记为优先处理。")
        if severity in handoff_settings().complaint_severities:
            await request_handoff(tracker, services, trigger="severe_complaint", reason=mask_text(
                f"{SEVERITY_LABELS[severity]}投诉，工单{ticket.ticket_id}（{category}）：{description}")[:MAX_REASON_CHARS])
            lines.append("已同时为您转接人工客服，请稍候。")
        lines.append("您可以随时发送工单号向我查询处理进度。")
        dispatcher.utter_message(
            text="\n".join(lines),
            buttons=buttons(("查询处理进度", f"/complain{{\"complaint_ticket\":\"{ticket.ticket_id}\"}}")),
        )
        return done + [SlotSet("complaint_ticket", ticket.ticket_id)]

