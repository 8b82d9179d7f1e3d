"""Replies to a notice: the notice the customer received, read from the message metadata.

The gateway passes the last notice sent to the conversation (bill_summary, bill_due, arrears,
low_balance, outage_notice, power_restored; kept NOTICE_CONTEXT_HOURS) with every message as
``metadata["notice"] = {kind, params, key, at}`` (channels/notice_context.py). Broadcast notices
carry ``key = "bc:<campaign id>:<户号>"``: the raw 户号 is only there, ``params["account"]`` is
masked. :func:`notice_of` reads it; the actions answer in its context:

- "已经交了" (inform_paid, :class:`ActionCheckPayment`): the notice's bill (or balance) fresh from
  the billing backend, for a conversation bound to that 户号 only (else verification first);
- "怎么交" (actions/payments.py): the notice's amount and due date before the methods;
- "什么时候来电" (actions/outage.py, :func:`actions.outage.notice_outage_reply`): THAT outage,
  fresh from the outage backend by its id;
- "TD" on WeChat / web (actions/reminders.py): unsubscribes from that notice's kind.

Without a notice the intents behave as they always did.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.account import require_binding
from actions.billing import month_label
from actions.clock import as_local, describe_moment, now_local
from actions.common import BackendAction, EventList, Services, buttons, conversation_id
from integrations.errors import NotFound
from integrations.masking import mask_account

logger = logging.getLogger(__name__)

BILL_KINDS = frozenset({"bill_summary", "bill_due", "arrears", "low_balance"})
OUTAGE_KINDS = frozenset({"outage_notice", "power_restored"})
_ACCOUNT = re.compile(r"\d{10}")
_MONTH = re.compile(r"\d{4}-\d{2}")
PAYMENT_DELAY_TEXT = ("缴费到账可能需要一些时间：线上渠道一般即时到账，银行代扣、营业厅或第三方代收"
                      "有时需要1-2个工作日。")


@dataclass(frozen=True)
class NoticeContext:
    """The last notice the conversation received (see the module docstring)."""

    kind: str
    params: Mapping[str, str]
    key: str
    at: Optional[float]

    @property
    def is_bill(self) -> bool:
        return self.kind in BILL_KINDS

    @property
    def is_outage(self) -> bool:
        return self.kind in OUTAGE_KINDS

    @property
    def reminder_kind(self) -> Optional[str]:
        """The subscription kind (CustomerStore) that sends notices of this kind."""
        return "bill_due" if self.is_bill else "outage" if self.is_outage else None

    @property
    def account(self) -> Optional[str]:
        """The raw 户号 the notice was about: the last part of a broadcast key."""
        if not self.key.startswith("bc:"):
            return None
        last = self.key.rpartition(":")[2]
        return last if _ACCOUNT.fullmatch(last) else None

    @property
    def outage_id(self) -> Optional[str]:
        """``params["outage_id"]``, else from the campaign id (outage:<id>:<stage>, restoration:<id>)."""
        if self.params.get("outage_id"):
            return self.params["outage_id"]
        parts = self.key.split(":")
        if len(parts) >= 4 and parts[0] == "bc" and parts[1] in ("outage", "restoration"):
            return parts[2]
        return None

    @property
    def bill_month(self) -> Optional[str]:
        """The bill's month (YYYY-MM) when the notice names one."""
        month = self.params.get("bill_month") or ""
        return month if _MONTH.fullmatch(month) else None

    def amount_line(self) -> Optional[str]:
        """The notice's figures as one sentence (amount and due date), for "怎么交"."""
        p = self.params
        if self.kind == "low_balance" and p.get("balance"):
            return f"您的预付费账户余额为{p['balance']}元，余额不足时可能影响正常用电，建议及时充值。"
        if not p.get("amount"):
            return None
        what = "欠费金额" if self.kind == "arrears" else f"{p.get('month', '')}电费"
        due = f"，缴费截止日期{p['due_date']}" if p.get("due_date") else ""
        return f"您收到的通知中，{what}为{p['amount']}元{due}。"


def notice_of(tracker: Tracker) -> Optional[NoticeContext]:
    """The notice in the latest message's metadata, or None (absent or malformed)."""
    metadata = tracker.latest_message.get("metadata") or {}
    raw: Any = metadata.get("notice") if isinstance(metadata, dict) else None
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
        return None
    params = raw.get("params") if isinstance(raw.get("params"), dict) else {}
    at = raw.get("at")
    return NoticeContext(raw["kind"], {str(k): str(v) for k, v in params.items()},
                         str(raw.get("key") or ""), float(at) if isinstance(at, (int, float)) else None)


def _yuan(value: Any) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}元"


def _date(value: dt.date) -> str:
    return f"{value.year}年{value.month}月{value.day}日"


def _payment_text(payment: Any) -> str:
    """``最近一笔缴费：100.00元（11月24日（昨天）10:05，微信）``."""
    if payment is None:
        return ""
    channel = f"，{payment.channel}" if payment.channel else ""
    when = describe_moment(as_local(payment.paid_at), now_local().date())
    return f"最近一笔缴费：{_yuan(payment.amount)}（{when}{channel}）。"


async def paid_reply(services: Services, account: str, notice: Optional[NoticeContext]) -> str:
    """Whether the notice's bill (or arrears, or low balance) is paid now, in words."""
    billing = services.billing
    who = f"户号{mask_account(account)}"
    balance = await billing.get_balance(account)
    if notice is not None and notice.kind == "low_balance":
        recharged = (balance.last_payment is not None and notice.at is not None
                     and as_local(balance.last_payment.paid_at).timestamp() >= notice.at)
        if recharged:
            return (f"已查询到{who}在提醒之后的充值，当前账户余额{_yuan(balance.balance)}。"
                    f"{_payment_text(balance.last_payment)}感谢您及时充值！")
        return (f"暂未查询到{who}在余额提醒之后的充值记录，当前账户余额{_yuan(balance.balance)}。"
                f"{PAYMENT_DELAY_TEXT}请稍后再查询。")
    if notice is not None and notice.kind == "arrears":
        arrears = Decimal(str(balance.arrears))
        if arrears <= 0:
            return (f"已查询到{who}的欠费已全部缴清，当前账户余额{_yuan(balance.balance)}。"
                    f"{_payment_text(balance.last_payment)}感谢您的支持！")
        due = notice.params.get("due_date")
        return (f"暂未查询到{who}欠费的缴清记录，当前仍欠费{_yuan(arrears)}"
                f"{f'（最早一期缴费截止日期{due}）' if due else ''}。{PAYMENT_DELAY_TEXT}"
                "如果您确认已缴费，请保留缴费凭证，稍后再查询。")
    bill = None
    month = notice.bill_month if notice is not None else None
    if month:
        try:
            bill = await billing.get_bill(account, month)
        except NotFound:
            bill = None
    if bill is None:
        bills = await billing.list_bills(account, limit=1)
        if not bills:
            return f"{who}暂无账单记录。"
        bill = bills[0]
    label = month_label(bill.month)
    if bill.status == "paid":
        return (f"已查询到{who} {label}电费{_yuan(bill.amount)}已缴清。"
                f"{_payment_text(balance.last_payment)}感谢您的支持！")
    owed = Decimal(str(bill.amount)) - Decimal(str(bill.paid_amount or 0))
    paid = f"（已缴{_yuan(bill.paid_amount)}）" if bill.paid_amount else ""
    overdue = "，已逾期，请尽快缴清以免产生违约金" if bill.status == "overdue" else ""
    return (f"暂未查询到{who} {label}电费的缴清记录：应缴{_yuan(owed)}{paid}，"
            f"缴费截止日期{_date(bill.due_date)}{overdue}。{PAYMENT_DELAY_TEXT}"
            "如果您确认已缴费，请保留缴费凭证，稍后再查询。")


class ActionCheckPayment(BackendAction):
    """"已经交了": check the notice's bill (or the bound 户号's latest bill) for the bound 户号."""

    def name(self) -> str:
        return "action_check_payment"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict, services: Services) -> EventList:
        notice = notice_of(tracker)
        if notice is not None and not notice.is_bill:
            notice = None
        bound = await services.customers.get_binding(conversation_id(tracker))
        wanted = notice.account if notice is not None else None
        if bound is None or (wanted is not None and wanted != bound):
            return await require_binding(dispatcher, tracker, services, "query_bill",
                                         "查询缴费情况", account_number=wanted)
        dispatcher.utter_message(
            text=await paid_reply(services, bound, notice),
            buttons=buttons(("查电费", "/query_bill"), ("缴费方式", "/ask_payment_methods"),
                            ("转人工", "/request_human")),
        )
        return [SlotSet("needs_binding", False)]


def unsubscribe_note(notice: Optional[NoticeContext]) -> str:
    """What "TD" cannot stop: outage notices go to every bound conversation of the area."""
    if notice is None or not notice.is_outage:
        return ""
    return ("温馨提示：停电通知事关用电安全，会按您绑定户号所在区域发送，取消订阅后，"
            "您所在区域停电时我们仍可能通知您。")
