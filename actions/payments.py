"""Payment methods (怎么交电费 / 缴费方式).

The methods, their order and their descriptions come from the payment-methods settings
(actions/config/payment_methods.yml, see actions/settings.py), so a utility edits the file,
not the code. When the customer names one method (微信, 支付宝, 代扣, 营业厅, 网上国网) it is
answered first. After a bill notice (actions/notice_context.py) the answer starts with the
notice's amount and due date.
"""
from __future__ import annotations

from typing import Optional

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import BackendAction, EventList, Services, buttons
from actions.notice_context import notice_of
from actions.settings import PaymentMethod
from actions.text import normalize

_SUFFIXES = ("缴费", "app", "App", "APP")


def method_keys(method: PaymentMethod) -> set[str]:
    """Words that name the method in a question: its name without 缴费/App, and its last two
    characters (银行代扣 → 代扣, 网上国网 → 国网)."""
    core = method.name
    for suffix in _SUFFIXES:
        core = core.removesuffix(suffix)
    keys = {core.lower()}
    if len(core) > 2:
        keys.add(core[-2:].lower())
    return {k for k in keys if k}


def named_method(text: str, methods: tuple[PaymentMethod, ...]) -> Optional[PaymentMethod]:
    """The one configured method the text names, if exactly one is named."""
    text = normalize(text).lower()
    named = [m for m in methods if any(k in text for k in method_keys(m))]
    return named[0] if len(named) == 1 else None


def describe_methods(methods: tuple[PaymentMethod, ...], first: Optional[PaymentMethod]) -> str:
    """The reply text: the named method first, then every other configured method."""
    if first is not None:
        others = [m for m in methods if m != first]
        lines = [f"您好，{first.name}：{first.description}"]
        if others:
            lines.append("此外，您还可以通过以下方式缴纳电费：")
            lines += [f"{i}. {m.name}：{m.description}" for i, m in enumerate(others, 1)]
    else:
        lines = ["您好，您可以通过以下方式缴纳电费："]
        lines += [f"{i}. {m.name}：{m.description}" for i, m in enumerate(methods, 1)]
    if any(m.online for m in methods):
        lines.append("线上渠道24小时可缴费，缴费后一般即时到账。")
    return "\n".join(lines)


class ActionListPaymentMethods(BackendAction):
    """List the configured payment methods (the one the customer named first)."""

    def name(self) -> str:
        return "action_list_payment_methods"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict, services: Services) -> EventList:
        methods = services.settings.payment_methods
        first = named_method(tracker.latest_message.get("text") or "", methods)
        notice = notice_of(tracker)
        figures = notice.amount_line() if notice is not None and notice.is_bill else None
        dispatcher.utter_message(
            text=f"{figures}\n{describe_methods(methods, first)}" if figures
            else describe_methods(methods, first),
            buttons=buttons(("查电费", "/query_bill"), ("订阅缴费提醒", "/subscribe_reminder"),
                            ("附近营业厅", "/queue_lookup")),
        )
        return []
