"""Account binding with verification (绑定户号 / 验证 / 换绑 / 解绑).

A 户号 is bound to a conversation only after the customer proves it with the last 4 digits of
the phone on file (billing backend ``verify``). Until then nothing about that account (name,
address, bills) reaches the conversation. Wrong answers and unknown 户号 are counted per
conversation in the CustomerStore; the fifth failure locks binding for 30 minutes, so a
conversation can neither guess the phone digits nor probe which 户号 exist. Wrong answers are
also counted per 户号 across conversations (new web sessions cost nothing), and too many lock
that account's verification for 30 minutes.

Flow (rules in bot/data/account_billing.yml):
``action_start_binding`` (bind_account intent) or :func:`require_binding` (called by actions
that need an account) sets ``needs_binding``; ``bind_account_form`` asks for the 户号 and the
phone last-4, ``validate_bind_account_form`` checks both and binds; ``action_finish_binding``
confirms and hands back to the pending request (``pending_request``).
"""
from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    BackendAction,
    BackendFormValidationAction,
    EventList,
    Services,
    buttons,
    conversation_id,
)
from integrations.customer_store import MAX_FAILED_VERIFICATIONS
from integrations.errors import BackendRejected, IntegrationError, NotFound
from integrations.masking import mask_account, mask_name

logger = logging.getLogger(__name__)

FORM = "bind_account_form"
ACCOUNT_DIGITS = 10
PENDING_NONE = "none"
VERIFIED = "verified"
LOCKED = "locked"
# Stored in the slot instead of the digits: the tracker need not keep them once checked.
PHONE_CHECKED = "****"

_CN_DIGITS = {"零": "0", "〇": "0", "○": "0", "一": "1", "幺": "1", "二": "2", "两": "2",
              "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_UNBIND_WORDS = re.compile(r"解绑|解除绑定|取消绑定|删除户号|删掉户号|不绑了|解除关联")

MAIN_MENU_BUTTONS = (("查电费", "/query_bill"), ("缴费方式", "/ask_payment_methods"),
                     ("订阅缴费提醒", "/subscribe_reminder"))


def normalize_digits(text: str) -> str:
    """Half-width text with Chinese digit characters as ASCII digits (三二零 → 320)."""
    text = unicodedata.normalize("NFKC", text or "")
    return "".join(_CN_DIGITS.get(ch, ch) for ch in text)


def digit_runs(text: str) -> list[str]:
    """Runs of digits in the text, separators (space, -) inside a number ignored."""
    compact = re.sub(r"(?<=\d)[\s\-]+(?=\d)", "", normalize_digits(text))
    return re.findall(r"\d+", compact)


def short_masked_name(name: str) -> str:
    """张三丰 → 张**; a long (company) name keeps only its first character and three stars,
    so a reply neither grows a row of stars nor tells the name's length."""
    masked = mask_name(name)
    return masked if len(masked) <= 4 else masked[0] + "***"


def lock_text(seconds_left: int) -> str:
    minutes = max(1, -(-seconds_left // 60))
    return (f"为保护您的账户安全，验证失败次数过多，户号绑定功能已暂时锁定，请{minutes}分钟后再试。"
            "如需帮助，请携带身份证件到供电营业厅办理，或拨打95598供电服务热线。")


def entity_values(tracker: Tracker, name: str) -> list[str]:
    """Values of the entity ``name`` in the latest message."""
    return [str(e.get("value")) for e in tracker.latest_message.get("entities", [])
            if e.get("entity") == name and e.get("value") is not None]


def requested_account(tracker: Tracker, any_length: bool = False) -> Optional[str]:
    """The 户号 the customer typed in the latest message, if any (digits only).

    Only well-formed (10-digit) numbers count unless ``any_length``: the NLU sometimes tags
    other digits (the phone's last 4) as a 户号, and those must not switch accounts.
    """
    for value in entity_values(tracker, "account_number"):
        runs = digit_runs(value)
        if runs and (any_length or _is_account_number(runs[0])):
            return runs[0]
    return None


def _is_account_number(value: Any) -> bool:
    return isinstance(value, str) and len(value) == ACCOUNT_DIGITS and value.isdigit()


def slot_before_latest_message(tracker: Tracker, name: str) -> Any:
    """The slot's value as it was before the customer's latest message."""
    seen_user = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            seen_user = True
        elif seen_user and event.get("event") == "slot" and event.get("name") == name:
            return event.get("value")
    return None


async def require_binding(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    services: Services,
    pending: str,
    reason: str,
    account_number: Optional[str] = None,
) -> EventList:
    """Start verification for a request that needs a bound 户号 (or say binding is locked).

    Returns the events the calling action should return; the rules start bind_account_form
    when ``needs_binding`` is true.
    """
    locked = await services.customers.verification_locked(conversation_id(tracker))
    if locked:
        dispatcher.utter_message(text=lock_text(locked))
        return [SlotSet("needs_binding", False), SlotSet("pending_request", PENDING_NONE)]
    dispatcher.utter_message(
        text=f"您好，{reason}需要先验证您的户号。为保护您的用电信息，验证时需要提供户号登记的手机号码后4位。"
    )
    return _start_form_events(pending, account_number)


def _start_form_events(pending: str, account_number: Optional[str]) -> EventList:
    return [
        SlotSet("needs_binding", True),
        SlotSet("pending_request", pending),
        SlotSet("account_number", account_number),
        SlotSet("phone_last4", None),
        SlotSet("binding_outcome", None),
    ]


class ActionStartBinding(BackendAction):
    """bind_account intent: start verification, switch account, or unbind."""

    def name(self) -> str:
        return "action_start_binding"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict, services: Services) -> EventList:
        conv = conversation_id(tracker)
        bound = await services.customers.get_binding(conv)
        # Any length: a mistyped number reaches the form, which says what is wrong with it.
        wanted = requested_account(tracker, any_length=True)
        text = tracker.latest_message.get("text") or ""
        done = [SlotSet("needs_binding", False), SlotSet("pending_request", PENDING_NONE)]

        if wanted is None and _UNBIND_WORDS.search(text):
            previous = await services.customers.unbind(conv)
            if previous:
                dispatcher.utter_message(
                    text=f"已为您解除户号{mask_account(previous)}的绑定，该户号的提醒订阅也已一并取消。"
                         "如需再次查询，请重新绑定户号。",
                    buttons=buttons(("绑定其他户号", "/bind_account")),
                )
            else:
                dispatcher.utter_message(text="您当前没有绑定户号，无需解绑。")
            return done + [SlotSet("account_number", None)]

        locked = await services.customers.verification_locked(conv)
        if locked:
            dispatcher.utter_message(text=lock_text(locked))
            return done

        if wanted is not None and wanted == bound:
            dispatcher.utter_message(
                text=f"户号{mask_account(bound)}已经绑定在当前会话，无需重复绑定。请问需要办理什么业务？",
                buttons=buttons(*MAIN_MENU_BUTTONS),
            )
            return done

        intro = "好的，为保护您的用电信息，绑定户号需要验证户号登记的手机号码后4位。"
        if bound:
            intro += f"当前已绑定户号{mask_account(bound)}，新户号验证通过后将为您切换。"
        dispatcher.utter_message(text=intro)
        return _start_form_events(PENDING_NONE, wanted)


class ActionAskPhoneLast4(Action):
    """Ask for the phone last-4 of the 户号 being verified (masked)."""

    def name(self) -> str:
        return "action_ask_bind_account_form_phone_last4"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> EventList:
        account = tracker.get_slot("account_number")
        which = f"户号{mask_account(account)}" if account else "该户号"
        dispatcher.utter_message(
            text=f"请输入{which}登记的手机号码后4位数字，用于验证您的身份。如不需要绑定，请回复“取消”。"
        )
        return []


class ValidateBindAccountForm(BackendFormValidationAction):
    """Checks the 户号 and the phone last-4, counts failures and binds on success."""

    def name(self) -> str:
        return "validate_bind_account_form"

    async def required_slots(self, domain_slots: list[str], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: DomainDict) -> list[str]:
        # A lock ends the form at once: no further questions.
        if tracker.get_slot("binding_outcome") == LOCKED:
            return []
        return domain_slots

    async def extract_account_number(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                     domain: DomainDict) -> dict[str, Any]:
        """Take a digit run of any length while the form asks for the 户号.

        The NLU extracts only 10-digit numbers; a 9- or 12-digit answer would otherwise be
        silently ignored and the question repeated. Picking it up here lets validation say
        what is wrong.
        """
        if (tracker.get_slot("requested_slot") != "account_number"
                or tracker.active_loop.get("name") != FORM
                or entity_values(tracker, "account_number")
                or (tracker.latest_message.get("intent") or {}).get("name") == "deny"):
            return {}
        runs = [r for r in digit_runs(tracker.latest_message.get("text") or "") if len(r) >= 4]
        return {"account_number": runs[0]} if runs else {}

    async def _failed(self, dispatcher: CollectingDispatcher, conv: str,
                      message: str) -> dict[str, Any]:
        """Count a failed attempt; tell the customer what is left or that binding is locked."""
        left = await self.services.customers.record_failed_verification(conv)
        if left <= 0:
            dispatcher.utter_message(
                text=lock_text(await self.services.customers.verification_locked(conv)))
            return {"binding_outcome": LOCKED}
        dispatcher.utter_message(text=f"{message}您还可以尝试{left}次。")
        return {}

    async def validate_account_number(self, value: Any, dispatcher: CollectingDispatcher,
                                      tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if value is None:  # cleared by the action that started the form: nothing to check
            return {"account_number": None}
        conv = conversation_id(tracker)
        locked = await self.services.customers.verification_locked(conv)
        if locked:
            dispatcher.utter_message(text=lock_text(locked))
            return {"account_number": None, "binding_outcome": LOCKED}
        runs = digit_runs(str(value or ""))
        number = runs[0] if len(runs) == 1 else ""
        if len(number) != ACCOUNT_DIGITS and tracker.get_slot("requested_slot") == "phone_last4":
            # The NLU read the phone digits as a 户号 too: keep the 户号 being verified.
            return {"account_number": slot_before_latest_message(tracker, "account_number")}
        if len(number) != ACCOUNT_DIGITS:
            typed = f"您输入的是{len(number)}位，" if number else ""
            dispatcher.utter_message(
                text=f"户号为{ACCOUNT_DIGITS}位数字，{typed}请核对电费单或网上国网App中的户号后重新输入。")
            return {"account_number": None}
        try:
            await self.services.billing.get_account(number)
        except NotFound:
            # Same wording whatever the reason; counted so nobody can probe which 户号 exist.
            result = await self._failed(dispatcher, conv, "未查询到该户号，请核对后重新输入。")
            return {"account_number": None, **result}
        return {"account_number": number}

    async def validate_phone_last4(self, value: Any, dispatcher: CollectingDispatcher,
                                   tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if value is None:
            return {"phone_last4": None}
        conv = conversation_id(tracker)
        customers = self.services.customers
        locked = await customers.verification_locked(conv)
        if locked:
            dispatcher.utter_message(text=lock_text(locked))
            return {"phone_last4": None, "binding_outcome": LOCKED}
        account = tracker.get_slot("account_number")
        if not _is_account_number(account):
            # e.g. "尾号5678" also tagged as a (too short) 户号: verify the one asked about.
            account = slot_before_latest_message(tracker, "account_number")
        if not _is_account_number(account):
            return {"phone_last4": None, "account_number": None}
        if (tracker.latest_message.get("intent") or {}).get("name") == "bind_account":
            # "换个户号" while asked for the digits: start over with the new (or no) number.
            other = requested_account(tracker)
            if other is None:
                dispatcher.utter_message(text="好的，请重新输入您要绑定的户号。")
            return {"phone_last4": None, "account_number": other}
        runs = digit_runs(str(value or ""))
        digits = runs[0] if len(runs) == 1 else ""
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[-4:]  # the whole mobile number: only its last 4 are checked
        if len(digits) != 4:
            dispatcher.utter_message(text="请输入手机号码的后4位数字，例如：5678。")
            return {"phone_last4": None}
        account_locked = await customers.account_verification_locked(account)
        if account_locked:
            # Too many wrong answers for this 户号 from any conversation (see CustomerStore).
            minutes = max(1, -(-account_locked // 60))
            dispatcher.utter_message(
                text=f"为保护账户安全，该户号的验证已暂时锁定，请{minutes}分钟后再试。"
                     "如需帮助，请携带身份证件到供电营业厅办理，或拨打95598供电服务热线。")
            return {"phone_last4": None, "binding_outcome": LOCKED}
        try:
            verified = await self.services.billing.verify_phone(account, digits)
        except NotFound:
            dispatcher.utter_message(text="未查询到该户号，请重新输入户号。")
            return {"phone_last4": None, "account_number": None}
        except BackendRejected:
            dispatcher.utter_message(text="请输入手机号码的后4位数字，例如：5678。")
            return {"phone_last4": None}
        if not verified:
            await customers.record_failed_account_verification(account)
            result = await self._failed(
                dispatcher, conv, "验证未通过：您输入的手机号码后4位与该户号登记的信息不一致。")
            return {"phone_last4": None, "account_number": account, **result}
        await customers.bind(conv, account)
        await customers.clear_failed_verifications(conv)
        logger.info("conversation %s bound account %s", conv, mask_account(account))
        return {"phone_last4": PHONE_CHECKED, "binding_outcome": VERIFIED, "account_number": account}


class ActionFinishBinding(BackendAction):
    """After the form: confirm the binding and hand back to the pending request."""

    def name(self) -> str:
        return "action_finish_binding"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict, services: Services) -> EventList:
        conv = conversation_id(tracker)
        bound = await services.customers.get_binding(conv)
        outcome = tracker.get_slot("binding_outcome")
        pending = tracker.get_slot("pending_request") or PENDING_NONE
        reset = [SlotSet("phone_last4", None), SlotSet("binding_outcome", None),
                 SlotSet("needs_binding", False)]
        if outcome != VERIFIED or not bound:
            # Locked (already told) or the form ended without a verified account.
            return reset + [SlotSet("pending_request", PENDING_NONE)]
        holder = ""
        try:
            account = await services.billing.get_account(bound)
            holder = f"（户名：{short_masked_name(account.name)}）" if account.name else ""
        except IntegrationError as exc:  # the binding stands; the name is only a courtesy
            logger.warning("no account name for %s: %s", mask_account(bound), type(exc).__name__)
        text = f"验证成功，感谢您的耐心！已为您绑定户号{mask_account(bound)}{holder}。"
        if pending == PENDING_NONE:
            dispatcher.utter_message(text=text + "请问需要办理什么业务？",
                                     buttons=buttons(*MAIN_MENU_BUTTONS))
        else:
            dispatcher.utter_message(text=text)
        return reset + [SlotSet("pending_request", pending)]
