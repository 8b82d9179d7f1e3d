"""Service-hall queues and remote ticket taking (营业厅排队 / 远程取号).

Named ``hall_queue`` rather than ``queue`` so that running anything with ``actions/`` on the
import path can never shadow the standard library's ``queue`` module.

``action_queue_lookup`` answers waiting counts, the number now serving and the estimated wait
per hall and business type, or the position of the customer's own ticket (a number such as
A023, or the tickets taken remotely in this conversation: holder = conversation id).
``take_number_form`` collects the hall and the business type, asking with buttons listed from
the backend; ``action_take_number`` takes the ticket. Whenever the business can be done online
(business types marked ``online`` by the backend) the reply says so, as hall managers want
customers steered to 网上国网 instead of queueing.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Iterable, Optional

from rasa_sdk.events import SlotSet

from actions.common import (
    BackendAction,
    BackendFormValidationAction,
    EventList,
    Services,
    buttons,
    conversation_id,
)
from actions.creation_limits import QUEUE_NUMBER, creation_allowed
from actions.entities import entity_values
from actions.text import normalize
from integrations.errors import BackendRejected, NotFound

logger = logging.getLogger(__name__)

MAX_HALL_BUTTONS = 10

_HALL_SUFFIXES = ("供电营业厅", "供电服务厅", "营业厅", "服务厅", "供电所", "营业所", "大厅", "厅", "所")
# Everyday words for the business types, by backend code; the backend's own names always match
# as well, and the NLU maps most variants to those names already (nlu_data/synonyms.yml).
_BUSINESS_ALIASES = {
    "payment": ("交费", "交电费", "缴电费", "缴费", "充电费", "买电", "充值"),
    "transfer": ("过户", "户主变更", "换户主", "转户"),
    "new_connection": ("新装", "装表", "装电表", "报装", "开户", "新户"),
    "capacity_increase": ("增容", "扩容", "加容量", "提容"),
    "account_closure": ("销户", "注销", "退户"),
    "pv_grid": ("光伏", "并网", "太阳能"),
    "rename": ("更名", "改名", "户名变更"),
    "invoice": ("发票",),
    "tariff_consult": ("电价", "咨询"),
    "fault_repair": ("报修", "故障"),
}
# "我的号", "排到哪", "轮到我" …: the customer asks about a ticket of their own.
_OWN_TICKET = re.compile(
    r"我的号|我的票|我拿的号|我取的号|取的号|拿的号|我的排队|排到哪|到我|轮到我|叫到我|我排第|排第几|我前面"
)


def _hall_stem(name: str) -> str:
    name = normalize(name)
    for suffix in _HALL_SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


def hall_core(hall: Any) -> str:
    """The distinctive part of a hall's name: 江宁区东山营业厅 → 东山."""
    name = normalize(hall.name)
    district = normalize(getattr(hall, "district", "") or "")
    if district and name.startswith(district) and len(name) > len(district):
        name = name[len(district):]
    return _hall_stem(name)


def _longest(halls: list[Any], part) -> list[Any]:
    """The halls whose ``part`` is longest (the most specific match)."""
    if not halls:
        return []
    longest = max(len(part(h)) for h in halls)
    return [h for h in halls if len(part(h)) == longest]


def match_halls(text: str, halls: Iterable[Any]) -> list[Any]:
    """Halls the text names: the exact name, or a full name inside the text (换成江宁区东山营业厅吧);
    else the halls whose distinctive part (东山 of 江宁区东山营业厅) the text contains, the
    longest such part winning; else the halls whose name contains what the text says (its
    suffix removed).

    District names are left out when looking for distinctive parts, so the 江宁 of a
    "江宁区…" the customer typed does not also name 江宁区江宁营业厅.
    """
    text = normalize(text)
    if not text:
        return []
    halls = list(halls)
    named = [h for h in halls if normalize(h.name) in text]
    if named:
        return _longest(named, lambda h: normalize(h.name))
    districts = sorted({normalize(h.district) for h in halls if getattr(h, "district", None)},
                       key=len, reverse=True)
    without_districts = text
    for district in districts:
        without_districts = without_districts.replace(district, " ")

    def by_core(said: str) -> list[Any]:
        return [h for h in halls if len(hall_core(h)) >= 2 and hall_core(h) in said]

    found = by_core(without_districts) or by_core(text)
    if found:
        return _longest(found, hall_core)
    stem = _hall_stem(text)
    return [h for h in halls if len(stem) >= 2 and stem in normalize(h.name)]


def match_business_type(text: str, types: Iterable[Any]) -> Optional[Any]:
    """The business type the text names (backend name or code, else an everyday alias)."""
    text = normalize(text)
    if not text:
        return None
    types = list(types)
    for bt in types:
        if text in (bt.code, bt.name):
            return bt
    for bt in types:
        if bt.name in text or (len(text) >= 2 and text in bt.name):
            return bt
    for bt in types:
        if any(alias in text for alias in _BUSINESS_ALIASES.get(bt.code, ())):
            return bt
    return None


def normalize_ticket_number(value: str) -> Optional[str]:
    """``a23`` / ``A０２３`` → ``A023``; None when it is not a letter plus digits."""
    match = re.fullmatch(r"([A-Za-z])\s*-?\s*(\d{1,4})", normalize(value))
    if not match:
        return None
    return f"{match.group(1).upper()}{int(match.group(2)):03d}"


def online_hint(bt: Any) -> Optional[str]:
    """One sentence telling the customer the business can be done online, if it can (or, for
    hall-only business, why it needs the hall)."""
    if not getattr(bt, "online", False):
        reason = getattr(bt, "hall_only_reason", None)
        return f"温馨提示：{reason}" if reason else None
    channels = "、".join(bt.online_channels or ()) or "网上国网App"
    return f"温馨提示：{bt.name}业务可以通过{channels}在线办理，足不出户，无需到营业厅排队。"


def online_overview(types: Iterable[Any]) -> Optional[str]:
    """Which business types can be done online, for answers not about one type."""
    online = [bt for bt in types if getattr(bt, "online", False)]
    if not online:
        return None
    # only the channels every one of these types offers, so no type is promised a wrong channel
    channels = [c for c in online[0].online_channels or () if all(c in bt.online_channels for bt in online)]
    names = "、".join(bt.name for bt in online)
    return f"温馨提示：{names}等业务可以通过{'、'.join(channels) or '网上国网App'}在线办理，无需到厅排队。"


def _minutes(value: Any) -> str:
    minutes = int(round(float(value or 0)))
    if minutes <= 0:
        return "基本无需等待"
    if minutes < 60:
        return f"约{minutes}分钟"
    hours, rest = divmod(minutes, 60)
    return f"约{hours}小时{rest}分钟" if rest else f"约{hours}小时"


def describe_line(line: Any) -> str:
    """``缴费：等待5人，正在办理A018，预计等待约20分钟``."""
    serving = f"正在办理{line.now_serving}号" if line.now_serving else "暂未叫号"
    return (
        f"{line.business_name}：等待{line.waiting}人，{serving}，"
        f"预计等待{_minutes(line.estimated_wait_minutes)}"
    )


def _hall_header(hall: Any) -> str:
    status = "营业中" if hall.open_now else "当前非营业时间"
    return f"{hall.name}（{status}，营业时间：{hall.opening_hours}）"


STATUS_TEXT = {
    "serving": "已经叫到您的号了，请尽快到窗口办理。",
    "done": "这个号已经办理完成。",
    "expired": "这个号已经过号作废，如仍需办理请重新取号。",
}


def describe_ticket(ticket: Any, hall_name: str, business_name: str) -> str:
    """The customer's own ticket: where it stands and how long it should take."""
    head = f"您的{ticket.ticket_number}号（{hall_name}·{business_name}）"
    if ticket.status == "waiting":
        ahead = max(int(ticket.position or 0), 0)
        where = f"前面还有{ahead}位" if ahead else "马上就到您了"
        return f"{head}：{where}，预计等待{_minutes(ticket.estimated_wait_minutes)}。请留意叫号，过号需重新取号。"
    return f"{head}：{STATUS_TEXT.get(ticket.status, '状态：' + str(ticket.status))}"


class _Catalog:
    """Halls and business types of one action run, fetched at most once each."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._halls: Optional[list[Any]] = None
        self._types: Optional[list[Any]] = None

    async def halls(self) -> list[Any]:
        if self._halls is None:
            self._halls = list(await self._services.queue.list_halls())
        return self._halls

    async def types(self) -> list[Any]:
        if self._types is None:
            self._types = list(await self._services.queue.list_business_types())
        return self._types

    async def hall_by_id(self, hall_id: str) -> Optional[Any]:
        return next((h for h in await self.halls() if h.hall_id == hall_id), None)

    async def type_by_code(self, code: str) -> Optional[Any]:
        return next((t for t in await self.types() if t.code == code), None)


def _hall_buttons(halls: Iterable[Any], intent: str, extra: str = "") -> list[dict[str, str]]:
    return buttons(*(
        (h.name if h.open_now else f"{h.name}（未营业）", f'/{intent}{{"hall":"{h.name}"{extra}}}')
        for h in list(halls)[:MAX_HALL_BUTTONS]
    ))


# --- queue_lookup -----------------------------------------------------------------------------

def hall_not_found(name: str) -> str:
    """没有找到名为“青龙湾”的营业厅 / 没有找到“青龙湾营业厅” (the name as the customer said it)."""
    name = normalize(name)
    return f"没有找到“{name}”" if name.endswith(_HALL_SUFFIXES + ("服务中心",)) else f"没有找到名为“{name}”的营业厅"


def unknown_hall_text(name: str, searching_tickets: bool = False) -> str:
    """The honest answer for a hall the queue backend does not know, with the next step."""
    then = "已在所有营业厅中为您查找该票号。" if searching_tickets else \
        "以下是各营业厅的排队情况，点击营业厅可查看详情；也可以告诉我营业厅所在的区或街道。"
    return f"抱歉，{hall_not_found(name)}。{then}"


class ActionQueueLookup(BackendAction):
    """Hall queues per business type, or the customer's own ticket (see module doc)."""

    def name(self) -> str:
        return "action_queue_lookup"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        catalog = _Catalog(services)
        text = normalize(tracker.latest_message.get("text"))
        numbers = [n for n in map(normalize_ticket_number, entity_values(tracker, "ticket_number")) if n]
        named = entity_values(tracker, "hall")
        # a hall named earlier still counts for "那边排多少人", not for "我的号排到哪了"
        hall_names = named or [v for v in [normalize(tracker.get_slot("hall"))] if v]
        halls = []
        for name in hall_names:
            halls += [h for h in match_halls(name, await catalog.halls()) if h not in halls]
        bt_names = entity_values(tracker, "business_type")
        bt = match_business_type(bt_names[0], await catalog.types()) if bt_names else None

        unknown = [n for n in named if not match_halls(n, await catalog.halls())]
        if unknown and not halls:
            # The backend knows no such hall: say so, never answer about the others as if it did.
            dispatcher.utter_message(text=unknown_hall_text(unknown[0], bool(numbers)))
        if numbers:
            await self._numbered_tickets(dispatcher, tracker, services, catalog, numbers, halls)
            return []
        holder_tickets = list(await services.queue.tickets_of(conversation_id(tracker)))
        if _OWN_TICKET.search(text) and not named:
            await self._own_tickets(dispatcher, catalog, holder_tickets)
            return []
        if holder_tickets and not halls:
            active = [t for t in holder_tickets if t.status in ("waiting", "serving")]
            if active:
                await self._own_tickets(dispatcher, catalog, active)
        if len(halls) == 1:
            await self._hall_queue(dispatcher, services, catalog, halls[0], bt)
            return [SlotSet("hall", halls[0].name)]
        await self._overview(dispatcher, services, catalog, halls or await catalog.halls(), bt)
        return []

    async def _numbered_tickets(self, dispatcher, tracker, services, catalog, numbers, halls) -> None:
        mine = {t.ticket_number: t for t in await services.queue.tickets_of(conversation_id(tracker))}
        for number in numbers:
            found = [mine[number]] if number in mine and (
                not halls or mine[number].hall_id in {h.hall_id for h in halls}
            ) else []
            if not found:
                candidates = halls or await catalog.halls()
                results = await asyncio.gather(
                    *(services.queue.get_ticket(h.hall_id, number) for h in candidates),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, NotFound):
                        continue
                    if isinstance(result, BaseException):
                        raise result
                    found.append(result)
                found = [t for t in found if t.status in ("waiting", "serving")] or found
            if not found:
                dispatcher.utter_message(
                    text=f"抱歉，没有查到今天的{number}号。请核对票号，或告诉我您在哪个营业厅取的号。",
                    buttons=_hall_buttons(await catalog.halls(), "queue_lookup", f',"ticket_number":"{number}"'),
                )
            elif len(found) > 1:
                named = [await catalog.hall_by_id(t.hall_id) for t in found]
                dispatcher.utter_message(
                    text=f"今天有多个营业厅都发出了{number}号，请问您是在哪个营业厅取的号？",
                    buttons=_hall_buttons([h for h in named if h], "queue_lookup", f',"ticket_number":"{number}"'),
                )
            else:
                await self._say_ticket(dispatcher, catalog, found[0])

    async def _own_tickets(self, dispatcher, catalog, tickets) -> None:
        if not tickets:
            dispatcher.utter_message(
                text="没有查到您今天在线取的号。如果您是在营业厅取号机取的号，请告诉我票号（例如A023）；也可以现在为您远程取号。",
                buttons=buttons(("远程取号", "/take_number"), ("查看营业厅排队", "/queue_lookup")),
            )
            return
        for ticket in tickets:
            await self._say_ticket(dispatcher, catalog, ticket)

    async def _say_ticket(self, dispatcher, catalog, ticket) -> None:
        hall = await catalog.hall_by_id(ticket.hall_id)
        bt = await catalog.type_by_code(ticket.business_type)
        text = describe_ticket(ticket, hall.name if hall else ticket.hall_id, bt.name if bt else ticket.business_type)
        hint = online_hint(bt) if bt and ticket.status == "waiting" else None
        dispatcher.utter_message(text=f"{text}\n{hint}" if hint else text)

    async def _hall_queue(self, dispatcher, services, catalog, hall, bt) -> None:
        queue = await services.queue.get_queue(hall.hall_id)
        lines = list(queue.lines)
        if bt is not None:
            lines = [line for line in lines if line.business_type == bt.code]
            if not lines:
                dispatcher.utter_message(
                    text=f"{hall.name}不办理{bt.name}业务。"
                    + (f"\n{online_hint(bt)}" if online_hint(bt) else ""),
                    buttons=_hall_buttons(
                        [h for h in await catalog.halls() if bt.code in h.business_types],
                        "queue_lookup", f',"business_type":"{bt.name}"',
                    ),
                )
                return
        header = _hall_header(hall)
        if not queue.open_now:
            body = "目前不在营业时间，暂无排队，请在营业时间内前往。"
        elif not lines:
            body = "目前没有排队信息。"
        else:
            body = "\n".join(describe_line(line) for line in lines)
        hint = online_hint(bt) if bt is not None else online_overview(
            [t for t in await catalog.types() if t.code in {line.business_type for line in queue.lines}]
        )
        text = f"{header}当前排队情况：\n{body}"
        if hint:
            text += f"\n{hint}"
        dispatcher.utter_message(
            text=text,
            buttons=buttons(("远程取号", "/take_number"), ("查其他营业厅", "/queue_lookup")),
        )

    async def _overview(self, dispatcher, services, catalog, halls, bt) -> None:
        if bt is not None:
            halls = [h for h in halls if bt.code in h.business_types]
        halls = sorted(halls, key=lambda h: not h.open_now)  # open halls first
        if not halls:
            dispatcher.utter_message(text="抱歉，没有找到可以办理这项业务的营业厅。")
            return
        shown = halls[:MAX_HALL_BUTTONS]
        queues = await asyncio.gather(*(services.queue.get_queue(h.hall_id) for h in shown))
        rows = []
        for hall, queue in zip(shown, queues):
            lines = [line for line in queue.lines if bt is None or line.business_type == bt.code]
            if not queue.open_now:
                rows.append(f"{hall.name}：当前非营业时间（{hall.opening_hours}）")
                continue
            waiting = sum(int(line.waiting or 0) for line in lines)
            longest = max((line.estimated_wait_minutes or 0 for line in lines), default=0)
            label = f"{bt.name}等待{waiting}人" if bt else f"共等待{waiting}人"
            rows.append(f"{hall.name}：{label}，最长预计等待{_minutes(longest)}")
        head = f"各营业厅{bt.name}业务排队情况：" if bt else "各营业厅当前排队情况："
        hint = online_hint(bt) if bt else online_overview(await catalog.types())
        text = head + "\n" + "\n".join(rows) + "\n点击营业厅可查看各业务窗口的详细排队。"
        if hint:
            text += f"\n{hint}"
        extra = f',"business_type":"{bt.name}"' if bt else ""
        dispatcher.utter_message(text=text, buttons=_hall_buttons(shown, "queue_lookup", extra))


# --- take_number ----------------------------------------------------------------------------

class ValidateTakeNumberForm(BackendFormValidationAction):
    """Resolves the hall and business type against the backend (open hall, type offered there)."""

    def name(self) -> str:
        return "validate_take_number_form"

    async def extract_hall(self, dispatcher, tracker, domain) -> dict[str, Any]:
        """Accept a hall typed without the NLU finding an entity (e.g. "东山那个"), also as a
        change of hall while the business type is being asked."""
        if tracker.get_slot("requested_slot") not in ("hall", "business_type") or entity_values(tracker, "hall"):
            return {}
        text = normalize(tracker.latest_message.get("text"))
        if not text or text.startswith("/"):
            return {}
        found = match_halls(text, await self.services.queue.list_halls())
        if tracker.get_slot("requested_slot") == "business_type" and (
            not found or match_business_type(text, await self.services.queue.list_business_types())
        ):
            return {}
        return {"hall": found[0].name} if len(found) == 1 else {}

    async def extract_business_type(self, dispatcher, tracker, domain) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "business_type" or entity_values(tracker, "business_type"):
            return {}
        text = normalize(tracker.latest_message.get("text"))
        if not text or text.startswith("/"):
            return {}
        bt = match_business_type(text, await self.services.queue.list_business_types())
        return {"business_type": bt.name} if bt else {}

    async def validate_hall(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        halls = list(await self.services.queue.list_halls())
        found = match_halls(str(value or ""), halls)
        if not found:
            dispatcher.utter_message(text=f"抱歉，{hall_not_found(str(value))}，请从下面的营业厅中选择。")
            return {"hall": None}
        if len(found) > 1:
            dispatcher.utter_message(
                text="有几个营业厅都符合，请问是哪一个？",
                buttons=_hall_buttons(found, "inform"),
            )
            return {"hall": None}
        hall = found[0]
        if not hall.open_now:
            dispatcher.utter_message(
                text=f"{hall.name}现在不在营业时间（营业时间：{hall.opening_hours}），暂时不能取号。"
                "您可以选择其他正在营业的营业厅，或在营业时间内再来取号。"
            )
            return {"hall": None}
        result: dict[str, Any] = {"hall": hall.name}
        current = tracker.get_slot("business_type")
        if current:
            bt = match_business_type(current, await self.services.queue.list_business_types())
            if bt is None or bt.code not in hall.business_types:
                dispatcher.utter_message(text=f"{hall.name}不办理{current}业务，请重新选择要办理的业务。")
                result["business_type"] = None
        return result

    async def validate_business_type(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        types = list(await self.services.queue.list_business_types())
        bt = match_business_type(str(value or ""), types)
        if bt is None:
            dispatcher.utter_message(text=f"抱歉，没有“{normalize(str(value))}”这项业务，请从下面的业务中选择。")
            return {"business_type": None}
        hall_name = tracker.get_slot("hall")
        if hall_name:
            found = match_halls(hall_name, await self.services.queue.list_halls())
            if len(found) == 1 and bt.code not in found[0].business_types:
                dispatcher.utter_message(text=f"{found[0].name}不办理{bt.name}业务，请选择其他业务或换一个营业厅。")
                return {"business_type": None}
        return {"business_type": bt.name}


class ActionAskTakeNumberFormHall(BackendAction):
    """Asks for the hall with a button per hall (open ones first)."""

    def name(self) -> str:
        return "action_ask_take_number_form_hall"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        halls = sorted(await services.queue.list_halls(), key=lambda h: not h.open_now)
        open_halls = [h for h in halls if h.open_now]
        if not open_halls:
            hint = online_overview(await services.queue.list_business_types())
            dispatcher.utter_message(
                text="目前所有营业厅都不在营业时间，暂时不能远程取号，请在营业时间内再来取号。"
                + (f"\n{hint}" if hint else "") + "\n如需取消，请回复“不用了”。",
                buttons=buttons(("不用了", "/deny")),
            )
            return []
        dispatcher.utter_message(
            response="utter_ask_take_number_form_hall", buttons=_hall_buttons(open_halls, "inform")
        )
        return []


class ActionAskTakeNumberFormBusinessType(BackendAction):
    """Asks for the business type with a button per type the chosen hall handles."""

    def name(self) -> str:
        return "action_ask_take_number_form_business_type"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        types = list(await services.queue.list_business_types())
        found = match_halls(tracker.get_slot("hall") or "", await services.queue.list_halls())

        def type_buttons(offered: Iterable[Any]) -> list[dict[str, str]]:
            return buttons(*((t.name, f'/inform{{"business_type":"{t.name}"}}') for t in offered))

        if len(found) != 1:
            dispatcher.utter_message(response="utter_ask_take_number_form_business_type", buttons=type_buttons(types))
            return []
        hall = found[0]
        dispatcher.utter_message(
            text=f"请问您要在{hall.name}办理什么业务？如需换营业厅，直接告诉我营业厅名称即可。",
            buttons=type_buttons([t for t in types if t.code in hall.business_types]),
        )
        return []


class ActionTakeNumber(BackendAction):
    """Takes a ticket at the chosen hall for the chosen business, for this conversation."""

    def name(self) -> str:
        return "action_take_number"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        reset = [SlotSet("hall", None), SlotSet("business_type", None)]
        halls = match_halls(tracker.get_slot("hall") or "", await services.queue.list_halls())
        bt = match_business_type(tracker.get_slot("business_type") or "", await services.queue.list_business_types())
        if len(halls) != 1 or bt is None:
            dispatcher.utter_message(text="抱歉，营业厅或业务类型没有确认成功，请重新告诉我“取号”。")
            return reset
        hall = halls[0]
        holder = conversation_id(tracker)
        waiting = [
            t for t in await services.queue.tickets_of(holder)
            if t.hall_id == hall.hall_id and t.business_type == bt.code and t.status in ("waiting", "serving")
        ]
        if waiting:
            text = describe_ticket(waiting[0], hall.name, bt.name)
            dispatcher.utter_message(text=f"您已经在{hall.name}取过{bt.name}的号了，无需重复取号。\n{text}")
            return reset
        if not await creation_allowed(QUEUE_NUMBER, dispatcher, tracker, services):
            return reset
        try:
            ticket = await services.queue.take_ticket(hall.hall_id, bt.code, holder)
        except BackendRejected as exc:
            logger.info("take_ticket rejected at %s: %s %s", hall.hall_id, exc.code, exc.message)
            if exc.code == "too_many_tickets":
                dispatcher.utter_message(
                    text="抱歉，您今天在线取号的次数已达上限。如需继续办理，请到营业厅现场取号，"
                    "或通过网上国网App在线办理。"
                )
                return reset
            if exc.code != "hall_closed":
                dispatcher.utter_message(
                    text=f"抱歉，{hall.name}暂时无法为{bt.name}业务取号，请换一个营业厅或业务再试。",
                    buttons=buttons(("换个营业厅取号", "/take_number"),),
                )
                return reset
            dispatcher.utter_message(
                text=f"抱歉，{hall.name}现在不能取号（营业时间：{hall.opening_hours}）。"
                "您可以换一个正在营业的营业厅，或在营业时间内再来取号。",
                buttons=buttons(("换个营业厅取号", "/take_number"), ("查看排队情况", "/queue_lookup")),
            )
            return reset
        ahead = max(int(ticket.position or 0), 0)
        lines = [
            f"已为您在{hall.name}取号成功！",
            f"您的号码：{ticket.ticket_number}（{bt.name}）",
            (f"前面还有{ahead}位，" if ahead else "前面没有人排队，")
            + f"预计等待{_minutes(ticket.estimated_wait_minutes)}。",
            f"营业厅地址：{hall.address}",
            "请留意叫号，过号需重新取号。您可以随时问我“我的号排到哪了”。",
        ]
        hint = online_hint(bt)
        if hint:
            lines.append(hint)
        dispatcher.utter_message(
            text="\n".join(lines),
            buttons=buttons(
                ("我的号排到哪了", f'/queue_lookup{{"ticket_number":"{ticket.ticket_number}"}}'),
                ("查看营业厅排队", f'/queue_lookup{{"hall":"{hall.name}"}}'),
            ),
        )
        return reset
