"""Bill queries (查电费 / 上个月呢 / 为什么这么贵).

``action_query_bill`` answers only for the 户号 bound (and verified) to the conversation; with
none bound, or when the customer names another 户号, it starts verification first (see
actions/account.py). The month comes from the ``month`` entity/slot (上个月, 本月, 9月, 九月,
2026年9月, 二零二六年九月, 2026-09), read relative to today in POWERDESK_TIMEZONE; without one
the latest bill is shown. An explanation request (entity ``bill_aspect`` or the same phrasing
in the text) explains the bill shown last (slot ``bill_month``) from the bill's own data:
tier reached, peak share, and the change against the previous month.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Optional

import cn2an
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.account import require_binding, requested_account
from actions.clock import today
from actions.common import BackendAction, EventList, Services, buttons, conversation_id
from actions.constants import HOTLINE
from actions.entities import entity_values
from bot.components.normalization import normalize_text
from integrations.errors import IntegrationError, NotFound
from integrations.masking import mask_account

logger = logging.getLogger(__name__)

BILLS_KEPT_MONTHS = 12
STATUS_TEXT = {"paid": "已缴清", "unpaid": "待缴费", "overdue": "已逾期，请尽快缴费"}
TIER_NAMES = {1: "第一档", 2: "第二档", 3: "第三档"}
_EXPLAIN = re.compile(
    r"为什么|为啥|为何|咋这么|怎么这么|怎么会这么|这么贵|这么高|这么多钱|凭什么|偏高|太贵|太高|"
    r"涨了|变高|变多|多了好多|贵了|原因|算错"
)


class MonthNotUnderstood(ValueError):
    """The month the customer named cannot be read as one calendar month."""


def _shift(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def _cn_number(text: str) -> int:
    """二 → 2, 十一 → 11, 二零二六 → 2026 (cn2an); digits pass through."""
    return int(cn2an.cn2an(text.replace("○", "〇"), "smart"))


def parse_month(text: str, reference: dt.date) -> str:
    """The calendar month (``YYYY-MM``) the customer meant, relative to ``reference``.

    A month without a year is the latest such month not after the reference month
    (in November, "9月" is this September and "12月" last December).
    """
    s = normalize_month_text(text)
    relative = {"本月": 0, "这个月": 0, "这月": 0, "当月": 0,
                "上个月": -1, "上月": -1, "上一个月": -1, "上一月": -1,
                "上上个月": -2, "上上月": -2, "前两个月": -2, "两个月前": -2}
    for word in sorted(relative, key=len, reverse=True):
        if s.startswith(word):
            year, month = _shift(reference.year, reference.month, relative[word])
            return f"{year:04d}-{month:02d}"
    cn = "零〇○一二两三四五六七八九十"
    match = (re.fullmatch(rf"(?:(\d{{4}}|[{cn}]{{4}}|今|去|前)年)?(\d{{1,2}}|[{cn}]{{1,3}})月(?:份)?(?:的)?", s)
             or re.fullmatch(r"(\d{4})[-/.](\d{1,2})", s))
    if not match:
        raise MonthNotUnderstood(text)
    year_text, month_text = match.group(1), match.group(2)
    try:
        month = _cn_number(month_text)
        if year_text is None:
            year = reference.year if month <= reference.month else reference.year - 1
        elif year_text in ("今", "去", "前"):
            year = reference.year - {"今": 0, "去": 1, "前": 2}[year_text]
        else:
            year = _cn_number(year_text)
    except ValueError as exc:
        raise MonthNotUnderstood(text) from exc
    if not 1 <= month <= 12:
        raise MonthNotUnderstood(text)
    return f"{year:04d}-{month:02d}"


def normalize_month_text(text: str) -> str:
    """The NLU's normalisation (half-width, 十一月 → 11月), no spaces, trailing filler removed."""
    s = re.sub(r"\s+", "", normalize_text(text).text)
    s = re.sub(r"(的|呢|账单|电费|用电)+$", "", s)
    return s


def month_label(month: str) -> str:
    year, mon = month.split("-")
    return f"{int(year)}年{int(mon)}月"


def _money(value) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}元"


def _kwh(value) -> str:
    number = Decimal(str(value))
    text = f"{number.normalize():f}" if number == number.to_integral() else f"{number:.2f}"
    return f"{text}度"


def _pct(part, whole) -> int:
    if not whole:
        return 0
    return int((Decimal(str(part)) * 100 / Decimal(str(whole))).quantize(Decimal("1"),
                                                                          rounding=ROUND_HALF_UP))


def _tier_name(tier: int) -> str:
    return TIER_NAMES.get(tier, f"第{tier}档")


def _surcharge_tiers(bill) -> bool:
    """Residential 阶梯 + 峰谷: the energy is charged at 峰/谷 prices and the tier lines carry
    only the surcharge over tier 1 (price 0 for tier 1), per the billing backend's contract."""
    return bool(bill.time_of_use) and bool(bill.tiers)


def _tier_lines(bill) -> str:
    used = [t for t in bill.tiers if Decimal(str(t.kwh)) > 0]
    if _surcharge_tiers(bill):
        parts = [f"{_kwh(t.kwh)}计入{_tier_name(t.tier)}" + (
            f"，每度加价{t.price}元，加价{_money(t.amount)}" if Decimal(str(t.price)) > 0 else "")
            for t in used]
    else:
        parts = [f"{_tier_name(t.tier)}{_kwh(t.kwh)}×{t.price}元/度={_money(t.amount)}" for t in used]
    return "；".join(parts)


def describe_bill(account: str, bill, balance) -> str:
    """The bill as the customer reads it (account masked)."""
    lines = [f"您好，户号{mask_account(account)} {month_label(bill.month)}电费账单如下："]
    lines.append(f"· 计费周期：{bill.period_start} 至 {bill.period_end}")
    usage = f"· 用电量：{_kwh(bill.kwh_total)}"
    if bill.time_of_use:
        usage += f"（峰时段{_kwh(bill.kwh_peak or 0)}，谷时段{_kwh(bill.kwh_valley or 0)}）"
    lines.append(usage)
    lines.append(f"· 电费金额：{_money(bill.amount)}")
    if len(bill.tiers) > 1 or bill.tier_reached > 1:
        lines.append(f"· 阶梯电价：当期已达{_tier_name(bill.tier_reached)}（按年度累计用电量计算）。"
                     f"{_tier_lines(bill)}")
    elif bill.tiers:
        lines.append(f"· 电价：{bill.tiers[0].price}元/度")
    if bill.time_of_use:
        parts = "；".join(
            f"{'峰' if p.period == 'peak' else '谷'}时段{_kwh(p.kwh)}×{p.price}元/度={_money(p.amount)}"
            for p in bill.time_of_use)
        lines.append(f"· 峰谷明细：{parts}")
    status = STATUS_TEXT.get(bill.status, bill.status)
    lines.append(f"· 缴费截止日期：{bill.due_date}（{status}）")
    if bill.status != "paid" and bill.paid_amount:
        lines.append(f"· 已缴：{_money(bill.paid_amount)}")
    if balance is not None:
        if balance.arrears and Decimal(str(balance.arrears)) > 0:
            lines.append(f"· 当前欠费：{_money(balance.arrears)}，请尽快缴清，以免产生违约金。")
        else:
            lines.append(f"· 当前账户余额：{_money(balance.balance)}，暂无欠费。")
    return "\n".join(lines)


def _tier_extra(bill) -> Decimal:
    """What the energy above tier 1 cost more than at the tier-1 price."""
    higher = [t for t in bill.tiers if t.tier > 1]
    if _surcharge_tiers(bill):
        return sum((Decimal(str(t.amount)) for t in higher), Decimal("0"))
    base = Decimal(str(min(bill.tiers, key=lambda t: t.tier).price))
    return sum((Decimal(str(t.kwh)) * (Decimal(str(t.price)) - base) for t in higher),
               Decimal("0")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def explain_bill(account: str, bill, balance=None, valley_hours: Optional[str] = None,
                 residential: bool = True) -> str:
    """Why the bill is what it is, from the bill's own figures (and the tariff's 谷 hours)."""
    label = month_label(bill.month)
    lines = [f"您好，户号{mask_account(account)} {label}的电费为{_money(bill.amount)}，"
             f"用电{_kwh(bill.kwh_total)}。具体分析如下："]
    reasons: list[str] = []
    prev_kwh, prev_amount = bill.previous_month_kwh, bill.previous_month_amount
    if prev_kwh is not None and prev_amount is not None:
        diff_kwh = Decimal(str(bill.kwh_total)) - Decimal(str(prev_kwh))
        diff_amount = Decimal(str(bill.amount)) - Decimal(str(prev_amount))
        if diff_kwh > 0:
            change = f"，增加约{_pct(diff_kwh, prev_kwh)}%" if prev_kwh else ""
            more = f"，电费相应多了{_money(diff_amount)}" if diff_amount > 0 else ""
            reasons.append(f"用电量比上月（{_kwh(prev_kwh)}）多了{_kwh(diff_kwh)}{change}{more}。"
                           "天气变化时空调、取暖器、热水器等用电通常会明显增加。")
        elif diff_kwh < 0:
            reasons.append(f"用电量比上月（{_kwh(prev_kwh)}）少了{_kwh(-diff_kwh)}，"
                           f"电费也比上月（{_money(prev_amount)}）有所减少。")
        else:
            reasons.append(f"用电量与上月持平（{_kwh(prev_kwh)}），上月电费为{_money(prev_amount)}。")
    higher = [t for t in bill.tiers if t.tier > 1 and Decimal(str(t.kwh)) > 0]
    if higher:
        detail = "、".join(f"{_kwh(t.kwh)}计入{_tier_name(t.tier)}" for t in higher)
        reasons.append(f"阶梯电价：您今年的累计用电量已超过第一档，当期{detail}，"
                       f"比全部按第一档电价计费多约{_money(_tier_extra(bill))}。")
    elif bill.tiers and not _surcharge_tiers(bill):
        reasons.append(f"计费方式：{_tier_lines(bill)}。")
    if bill.time_of_use and bill.kwh_total:
        share = _pct(bill.kwh_peak or 0, bill.kwh_total)
        prices = {p.period: p.price for p in bill.time_of_use}
        text = f"峰谷用电：峰时段用电{_kwh(bill.kwh_peak or 0)}，占{share}%"
        if "peak" in prices and "valley" in prices:
            text += f"（峰电{prices['peak']}元/度，谷电{prices['valley']}元/度）"
        if share >= 50:
            when = f"（{valley_hours}）" if valley_hours else ""
            habits = "把洗衣、烧水、充电等用电" if residential else "在条件允许时把部分生产经营用电"
            text += f"，峰时段用电占比较高，{habits}尽量安排到谷时段{when}可以节省电费。"
        else:
            text += "。"
        reasons.append(text)
    if balance is not None and Decimal(str(balance.arrears)) > Decimal(str(bill.amount)):
        reasons.append(f"您当前欠费{_money(balance.arrears)}，其中包含此前未缴清的账单，"
                       "并非本期电费全部。")
    if not reasons:
        reasons.append("本期电费按您的实际用电量和现行电价计算，未见异常。")
    lines += [f"{i}. {r}" for i, r in enumerate(reasons, 1)]
    lines.append(f"如您对电表读数仍有疑问，可申请电能表校验，或拨打{HOTLINE}供电服务热线。")
    return "\n".join(lines)


def wants_explanation(tracker: Tracker) -> bool:
    if entity_values(tracker, "bill_aspect"):
        return True
    intent = (tracker.latest_message.get("intent") or {}).get("name")
    return intent == "query_bill" and bool(_EXPLAIN.search(tracker.latest_message.get("text") or ""))


async def tariff_context(services: Services, account_number: str) -> tuple[Optional[str], bool]:
    """(谷 hours of the account's tariff, whether residential), for the saving advice.

    Advice only: when the backend cannot say, the explanation goes out without it.
    """
    try:
        account = await services.billing.get_account(account_number)
        tariffs = await services.billing.list_tariffs()
    except IntegrationError as exc:
        logger.warning("no tariff hours for %s: %s", mask_account(account_number),
                       type(exc).__name__)
        return None, True
    residential = account.customer_type == "residential"
    for tariff in tariffs:
        if tariff.tariff_code == account.tariff_code:
            for period in tariff.time_of_use:
                if period.period == "valley":
                    return period.hours, residential
    return None, residential


class ActionQueryBill(BackendAction):
    """Show a month's bill (default: latest) or explain it, for the verified bound 户号."""

    def name(self) -> str:
        return "action_query_bill"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict, services: Services) -> EventList:
        bound = await services.customers.get_binding(conversation_id(tracker))
        wanted = requested_account(tracker)
        if bound is None or (wanted is not None and wanted != bound):
            return await require_binding(dispatcher, tracker, services, "query_bill",
                                         "查询电费账单", account_number=wanted)
        done = [SlotSet("needs_binding", False), SlotSet("month", None)]
        explain = wants_explanation(tracker)
        month_text = tracker.get_slot("month")
        reference = today()
        month: Optional[str] = None
        if month_text:
            try:
                month = parse_month(str(month_text), reference)
            except MonthNotUnderstood:
                dispatcher.utter_message(
                    text=f"抱歉，我没能确定您说的“{month_text}”是哪个月份。"
                         "请告诉我具体的月份，例如“上个月”“9月”或“2026年9月”。")
                return done
        elif explain and tracker.get_slot("bill_month"):
            month = tracker.get_slot("bill_month")

        if month is None:
            bills = await services.billing.list_bills(bound, limit=1)
            if not bills:
                dispatcher.utter_message(text=f"户号{mask_account(bound)}暂无账单记录。")
                return done
            bill = bills[0]
        else:
            current = f"{reference.year:04d}-{reference.month:02d}"
            try:
                bill = await services.billing.get_bill(bound, month)
            except NotFound:
                if month >= current:
                    reply = f"{month_label(month)}的电费账单尚未出账，账单一般在次月初生成。"
                else:
                    reply = (f"未查询到户号{mask_account(bound)} {month_label(month)}的电费账单。"
                             f"目前可以查询最近{BILLS_KEPT_MONTHS}个月的账单，更早的记录请到营业厅或在网上国网App查询。")
                dispatcher.utter_message(text=reply, buttons=buttons(("最新账单", "/query_bill")))
                return done

        prev_year, prev_month = _shift(*map(int, bill.month.split("-")), -1)
        previous = f"{prev_year:04d}-{prev_month:02d}"
        follow_ups = buttons(
            (f"{prev_month}月账单", f'/query_bill{{"month": "{previous}"}}'),
            ("缴费方式", "/ask_payment_methods"),
            ("订阅缴费提醒", "/subscribe_reminder"),
        )
        if explain:
            hours, residential = (await tariff_context(services, bound) if bill.time_of_use
                                  else (None, True))
            balance = await services.billing.get_balance(bound)
            dispatcher.utter_message(text=explain_bill(bound, bill, balance, hours, residential),
                                     buttons=follow_ups)
        else:
            balance = await services.billing.get_balance(bound)
            dispatcher.utter_message(
                text=describe_bill(bound, bill, balance),
                buttons=[follow_ups[0], {"title": "为什么这么贵",
                                         "payload": '/query_bill{"bill_aspect": "为什么这么贵"}'},
                         *follow_ups[1:]],
            )
        return done + [SlotSet("bill_month", bill.month)]
