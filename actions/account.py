"""Account binding with verification (绑定户号 / 验证 / 换绑 / 解绑).

A 户号 is bound to a conversation only after the customer proves they own it. When SMS is
configured (``VerificationSettings.sms_codes``) the default proof is a 6-digit one-time code
texted to the phone on file (5 minutes, single use); the last 4 digits of that phone (billing
backend ``verify``) are the fallback, and the only method without SMS. Until then nothing about
the account (name, address, bills) reaches the conversation.

Guessing is limited in the CustomerStore (see its module doc): every check reserves an attempt
before it is evaluated, in the conversation, the client address (web chat), and for last-4
checks also the 户号 and the whole service, and is refunded on success;
a scope at its maximum is locked, and repeat locks last longer. A 户号 that is not found counts
like a wrong answer, so nobody can probe which 户号 exist. A 户号 locked by somebody else's
guesses can still be verified with a code (code checks count per conversation and address only),
so the owner keeps a way in.

Flow (rules in bot/data/account_billing.yml):
``action_start_binding`` (bind_account intent) or :func:`require_binding` (called by actions
that need an account) sets ``needs_binding``; ``bind_account_form`` asks for the 户号, then for
the code (``verification_code``, when ``verification_method`` is ``sms``) or the phone last-4
(``phone_last4``); ``validate_bind_account_form`` checks them and binds; ``action_finish_binding``
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
    client_address,
    conversation_id,
)
from actions.constants import HOTLINE
from actions.entities import entity_values
from integrations.customer_store import (
    ACCOUNT,
    ADDRESS,
    CONVERSATION,
    SERVICE,
    Attempt,
    CustomerStore,
)
from integrations.errors import BackendRejected, IntegrationError, NotFound
from integrations.masking import log_conversation_id, mask_account, mask_name

logger = logging.getLogger(__name__)

FORM = "bind_account_form"
ACCOUNT_DIGITS = 10
CODE_DIGITS = 6
PENDING_NONE = "none"
VERIFIED = "verified"
LOCKED = "locked"
# binding_locked: true while verification is locked; the rules then answer digits typed
# outside a form with action_start_binding (the lock message again). Never cleared when a
# verification merely starts (the rule resuming it after an expired lock relies on that).
LOCKED_SLOT = "binding_locked"
METHOD_SMS = "sms"
METHOD_LAST4 = "last4"
SERVICE_SUBJECT = "all"
# Stored in the slots instead of the digits: the tracker need not keep them once checked.
PHONE_CHECKED = "****"
CODE_CHECKED = "******"

# Button payloads (the entity binding_option carries the choice, whatever the words).
UNBIND_PAYLOAD = '/bind_account{"binding_option":"unbind"}'
LAST4_PAYLOAD = '/inform{"binding_option":"last4"}'
RESEND_PAYLOAD = '/inform{"binding_option":"resend"}'
OPTION_UNBIND, OPTION_LAST4, OPTION_RESEND = "unbind", "last4", "resend"

_CN_DIGITS = {"零": "0", "〇": "0", "○": "0", "一": "1", "幺": "1", "二": "2", "两": "2",
              "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_UNBIND_WORDS = re.compile(r"解绑|解除绑定|取消绑定|删除户号|删掉户号|不绑了|解除关联")
_LAST4_WORDS = re.compile(r"没收到|收不到|没有收到|未收到|没短信|后四位|后4位|尾号|"
                          r"其他方式|别的方式|换.{0,2}方式")
_RESEND_WORDS = re.compile(r"重新发送|重发|再发|重新获取|再来一个")
HELP_TEXT = f"如需帮助，请携带身份证件到供电营业厅办理，或拨打{HOTLINE}供电服务热线。"

MAIN_MENU_BUTTONS = (("查电费", "/query_bill"), ("缴费方式", "/ask_payment_methods"),
                     ("订阅缴费提醒", "/subscribe_reminder"))
CODE_BUTTONS = (("重新发送验证码", RESEND_PAYLOAD), ("改用手机号码后4位验证", LAST4_PAYLOAD))


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


def _wait_text(seconds_left: int) -> str:
    minutes = max(1, -(-seconds_left // 60))
    return f"{minutes}分钟" if minutes <= 60 else f"{-(-minutes // 60)}小时"


def lock_text(seconds_left: int, scope: str = CONVERSATION) -> str:
    """What the customer is told when ``scope``'s verification lock refuses them."""
    wait = _wait_text(seconds_left)
    if scope == ACCOUNT:
        return f"为保护账户安全，该户号的验证已暂时锁定，请{wait}后再试。{HELP_TEXT}"
    if scope == SERVICE:
        return f"当前验证请求较多，手机号码后4位验证暂停使用，请{wait}后再试。{HELP_TEXT}"
    return (f"为保护您的账户安全，验证失败次数过多，户号绑定功能已暂时锁定，请{wait}后再试。"
            f"{HELP_TEXT}")


def customer_scopes(tracker: Tracker) -> list[tuple[str, str]]:
    """The limit scopes of whoever is typing: the conversation, and its address if known."""
    scopes = [(CONVERSATION, conversation_id(tracker))]
    address = client_address(tracker)
    if address:
        scopes.append((ADDRESS, address))
    return scopes


async def customer_lock(tracker: Tracker, customers: CustomerStore) -> Optional[tuple[str, int]]:
    """The conversation's or its address's verification lock, if one holds."""
    return await customers.locked_scope(customer_scopes(tracker))


def _log_refused(tracker: Tracker, scope: str, seconds: int) -> None:
    logger.warning("verification refused for %s: %s limit locked for %ss",
                   log_conversation_id(conversation_id(tracker)), scope, seconds)


def verification_intro(services: Services) -> str:
    """How verification works, in one sentence for the customer."""
    if services.verification.sms_codes:
        return "为保护您的用电信息，验证时将向户号登记的手机发送短信验证码。"
    return "为保护您的用电信息，验证时需要提供户号登记的手机号码后4位。"


def binding_option(tracker: Tracker) -> Optional[str]:
    """The choice a button carried (``binding_option`` entity), if any."""
    values = entity_values(tracker, "binding_option")
    return values[0] if values else None


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
    lock = await customer_lock(tracker, services.customers)
    if lock:
        dispatcher.utter_message(text=lock_text(lock[1], lock[0]))
        return [SlotSet("needs_binding", False), SlotSet("pending_request", PENDING_NONE),
                SlotSet(LOCKED_SLOT, True)]
    dispatcher.utter_message(
        text=f"您好，{reason}需要先验证您的户号。{verification_intro(services)}")
    return _start_form_events(pending, account_number)


def _start_form_events(pending: str, account_number: Optional[str]) -> EventList:
    return [
        SlotSet("needs_binding", True),
        SlotSet("pending_request", pending),
        SlotSet("account_number", account_number),
        SlotSet("phone_last4", None),
        SlotSet("verification_code", None),
        SlotSet("verification_method", None),
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

        if wanted is None and (binding_option(tracker) == OPTION_UNBIND
                               or _UNBIND_WORDS.search(text)):
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

        lock = await customer_lock(tracker, services.customers)
        if lock:
            dispatcher.utter_message(text=lock_text(lock[1], lock[0]))
            return done + [SlotSet(LOCKED_SLOT, True)]

        if wanted is not None and wanted == bound:
            dispatcher.utter_message(
                text=f"户号{mask_account(bound)}已经绑定在当前会话，无需重复绑定。请问需要办理什么业务？",
                buttons=buttons(*MAIN_MENU_BUTTONS),
            )
            return done

        intro = "好的，" + verification_intro(services)
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


class ActionAskVerificationCode(Action):
    """Say that the code was sent (never which phone: its last 4 digits are the fallback's
    secret) and ask for it, with the way out when it does not arrive."""

    def name(self) -> str:
        return "action_ask_bind_account_form_verification_code"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> EventList:
        account = tracker.get_slot("account_number")
        which = f"户号{mask_account(account)}" if account else "该户号"
        dispatcher.utter_message(
            text=f"验证码已发送至{which}登记的手机（尾号****），5分钟内有效。请输入短信中的6位验证码。"
                 "如未收到，可重新发送，或改用手机号码后4位验证；如不需要绑定，请回复“取消”。",
            buttons=buttons(*CODE_BUTTONS),
        )
        return []


class ValidateBindAccountForm(BackendFormValidationAction):
    """Checks the 户号 and the code or phone last-4 within the limits, and binds on success."""

    def name(self) -> str:
        return "validate_bind_account_form"

    async def required_slots(self, domain_slots: list[str], dispatcher: CollectingDispatcher,
                             tracker: Tracker, domain: DomainDict) -> list[str]:
        # A lock ends the form at once: no further questions.
        if tracker.get_slot("binding_outcome") == LOCKED:
            return []
        proof = "verification_code" if tracker.get_slot("verification_method") == METHOD_SMS \
            else "phone_last4"
        return [slot for slot in domain_slots if slot in ("account_number", proof)]

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

    # ---- shared steps ------------------------------------------------------------------------

    def _refused(self, dispatcher: CollectingDispatcher, tracker: Tracker, scope: str,
                 seconds: int, slot: str) -> dict[str, Any]:
        _log_refused(tracker, scope, seconds)
        dispatcher.utter_message(text=lock_text(seconds, scope))
        return {slot: None, "binding_outcome": LOCKED, LOCKED_SLOT: True}

    def _failed(self, dispatcher: CollectingDispatcher, tracker: Tracker, attempt: Attempt,
                message: str, left: Optional[int] = None) -> dict[str, Any]:
        """A counted failure: say what is left, or that this failure locked verification."""
        if attempt.locked_scope:
            _log_refused(tracker, attempt.locked_scope, attempt.seconds_left)
            dispatcher.utter_message(text=lock_text(attempt.seconds_left, attempt.locked_scope))
            return {"binding_outcome": LOCKED, LOCKED_SLOT: True}
        left = attempt.attempts_left if left is None else min(left, attempt.attempts_left)
        dispatcher.utter_message(text=f"{message}您还可以尝试{left}次。")
        return {}

    async def _bind(self, tracker: Tracker, account: str) -> None:
        conv = conversation_id(tracker)
        customers = self.services.customers
        dropped = await customers.bind(conv, account)
        await customers.clear_attempts(CONVERSATION, conv)
        logger.info("conversation %s bound account %s%s", log_conversation_id(conv),
                    mask_account(account),
                    f" (dropped the subscriptions of {', '.join(mask_account(a) for a in dropped)})"
                    if dropped else "")

    async def _offer_code(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                          account: str) -> dict[str, Any]:
        """Text a one-time code for ``account``; on a send cap or no mobile on file, fall back
        to the phone last-4. Returns the slots to set."""
        try:
            mobile = await self.services.billing.get_contact_mobile(account)
        except (NotFound, BackendRejected):
            mobile = None
        if mobile is not None:
            sent = await self.services.customers.issue_code(
                conversation_id(tracker), account, mobile, client_address(tracker))
            if sent.allowed:
                logger.info("verification code for %s requested by %s", mask_account(account),
                            log_conversation_id(conversation_id(tracker)))
                return {"verification_method": METHOD_SMS, "verification_code": None}
            logger.warning("verification code for %s refused: %s cap reached",
                           mask_account(account), sent.locked_scope)
            dispatcher.utter_message(text="验证码发送过于频繁，请稍后再试，或使用手机号码后4位验证。")
        return {"verification_method": METHOD_LAST4, "verification_code": None}

    def _account_being_verified(self, tracker: Tracker) -> Optional[str]:
        account = tracker.get_slot("account_number")
        if not _is_account_number(account):
            # e.g. "尾号5678" also tagged as a (too short) 户号: verify the one asked about.
            account = slot_before_latest_message(tracker, "account_number")
        return account if _is_account_number(account) else None

    def _switch_account(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                        slot: str) -> Optional[dict[str, Any]]:
        """"换个户号" while asked for the proof: start over with the new (or no) number."""
        if (tracker.latest_message.get("intent") or {}).get("name") != "bind_account":
            return None
        other = requested_account(tracker)
        if other is None:
            dispatcher.utter_message(text="好的，请重新输入您要绑定的户号。")
            return {slot: None, "account_number": None, "verification_method": None}
        return {slot: None, "account_number": other}

    # ---- the 户号 ----------------------------------------------------------------------------

    async def validate_account_number(self, value: Any, dispatcher: CollectingDispatcher,
                                      tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if value is None:  # cleared by the action that started the form: nothing to check
            return {"account_number": None}
        customers = self.services.customers
        lock = await customer_lock(tracker, customers)
        if lock:
            return self._refused(dispatcher, tracker, *lock, "account_number")
        runs = digit_runs(str(value or ""))
        number = runs[0] if len(runs) == 1 else ""
        if (len(number) != ACCOUNT_DIGITS
                and tracker.get_slot("requested_slot") in ("phone_last4", "verification_code")):
            # The NLU read the proof's digits as a 户号 too: keep the 户号 being verified.
            return {"account_number": slot_before_latest_message(tracker, "account_number")}
        if len(number) != ACCOUNT_DIGITS:
            typed = f"您输入的是{len(number)}位，" if number else ""
            dispatcher.utter_message(
                text=f"户号为{ACCOUNT_DIGITS}位数字，{typed}请核对电费单或网上国网App中的户号后重新输入。")
            return {"account_number": None}
        # Not service-wide: a flood of unknown 户号 must not stop owners from getting a code.
        attempt = await customers.reserve_attempt(customer_scopes(tracker))
        if not attempt.allowed:
            return self._refused(dispatcher, tracker, attempt.locked_scope, attempt.seconds_left,
                                 "account_number")
        try:
            await self.services.billing.get_account(number)
        except NotFound:
            # Same wording whatever the reason; counted so nobody can probe which 户号 exist.
            result = self._failed(dispatcher, tracker, attempt, "未查询到该户号，请核对后重新输入。")
            return {"account_number": None, **result}
        except Exception:
            await customers.refund_attempt(attempt)  # not the customer's failure
            raise
        await customers.refund_attempt(attempt)
        slots: dict[str, Any] = {"account_number": number}
        if self.services.verification.sms_codes:
            slots.update(await self._offer_code(dispatcher, tracker, number))
        return slots

    # ---- the one-time code -------------------------------------------------------------------

    async def validate_verification_code(self, value: Any, dispatcher: CollectingDispatcher,
                                         tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if value is None:
            return {"verification_code": None}
        account = self._account_being_verified(tracker)
        if account is None:
            return {"verification_code": None, "account_number": None,
                    "verification_method": None}
        switched = self._switch_account(dispatcher, tracker, "verification_code")
        if switched is not None:
            return switched
        text = str(value)
        option = binding_option(tracker)
        if option == OPTION_RESEND or (option is None and _RESEND_WORDS.search(text)):
            return {"account_number": account, **await self._offer_code(dispatcher, tracker, account)}
        if option == OPTION_LAST4 or (option is None and _LAST4_WORDS.search(text)):
            return {"account_number": account, "verification_code": None,
                    "verification_method": METHOD_LAST4}
        runs = digit_runs(text)
        code = runs[0] if len(runs) == 1 and len(runs[0]) == CODE_DIGITS else ""
        if not code:
            dispatcher.utter_message(text="请输入短信中的6位数字验证码，例如：123456。",
                                     buttons=buttons(*CODE_BUTTONS))
            return {"verification_code": None}
        customers = self.services.customers
        attempt = await customers.reserve_attempt(customer_scopes(tracker))
        if not attempt.allowed:
            return self._refused(dispatcher, tracker, attempt.locked_scope, attempt.seconds_left,
                                 "verification_code")
        try:
            check = await customers.check_code(conversation_id(tracker), account, code)
        except Exception:
            await customers.refund_attempt(attempt)
            raise
        if check.outcome == "verified":
            await customers.refund_attempt(attempt)
            await self._bind(tracker, account)
            return {"verification_code": CODE_CHECKED, "binding_outcome": VERIFIED,
                    "account_number": account, LOCKED_SLOT: False}
        if check.outcome == "missing":
            await customers.refund_attempt(attempt)
            dispatcher.utter_message(
                text="验证码已失效，请点击“重新发送验证码”获取新的验证码，或改用手机号码后4位验证。",
                buttons=buttons(*CODE_BUTTONS))
            return {"verification_code": None, "account_number": account}
        if check.tries_left == 0 and not attempt.locked_scope:
            dispatcher.utter_message(
                text="验证码错误次数过多，该验证码已失效。请点击“重新发送验证码”获取新的验证码，"
                     "或改用手机号码后4位验证。",
                buttons=buttons(*CODE_BUTTONS))
            return {"verification_code": None, "account_number": account}
        result = self._failed(dispatcher, tracker, attempt, "验证码不正确，请核对短信后重新输入。",
                              left=check.tries_left)
        return {"verification_code": None, "account_number": account, **result}

    # ---- the phone last-4 --------------------------------------------------------------------

    async def validate_phone_last4(self, value: Any, dispatcher: CollectingDispatcher,
                                   tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if value is None:
            return {"phone_last4": None}
        customers = self.services.customers
        account = self._account_being_verified(tracker)
        if account is None:
            return {"phone_last4": None, "account_number": None}
        switched = self._switch_account(dispatcher, tracker, "phone_last4")
        if switched is not None:
            return switched
        runs = digit_runs(str(value or ""))
        digits = runs[0] if len(runs) == 1 else ""
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[-4:]  # the whole mobile number: only its last 4 are checked
        if len(digits) != 4:
            dispatcher.utter_message(text="请输入手机号码的后4位数字，例如：5678。")
            return {"phone_last4": None}
        attempt = await customers.reserve_attempt(
            customer_scopes(tracker) + [(ACCOUNT, account), (SERVICE, SERVICE_SUBJECT)])
        if not attempt.allowed:
            if attempt.locked_scope in (ACCOUNT, SERVICE) and self.services.verification.sms_codes:
                # Somebody else's guesses must not lock the owner out: offer the code instead.
                _log_refused(tracker, attempt.locked_scope, attempt.seconds_left)
                dispatcher.utter_message(text="为保护账户安全，手机号码后4位验证已暂时锁定，请改用短信验证码验证。")
                slots = await self._offer_code(dispatcher, tracker, account)
                if slots["verification_method"] == METHOD_SMS:
                    return {"phone_last4": None, "account_number": account, **slots}
            return self._refused(dispatcher, tracker, attempt.locked_scope, attempt.seconds_left,
                                 "phone_last4")
        try:
            verified = await self.services.billing.verify_phone(account, digits)
        except NotFound:
            await customers.refund_attempt(attempt)
            dispatcher.utter_message(text="未查询到该户号，请重新输入户号。")
            return {"phone_last4": None, "account_number": None}
        except BackendRejected:
            await customers.refund_attempt(attempt)
            dispatcher.utter_message(text="请输入手机号码的后4位数字，例如：5678。")
            return {"phone_last4": None}
        except Exception:
            await customers.refund_attempt(attempt)
            raise
        if not verified:
            result = self._failed(dispatcher, tracker, attempt,
                                  "验证未通过：您输入的手机号码后4位与该户号登记的信息不一致。")
            return {"phone_last4": None, "account_number": account, **result}
        await customers.refund_attempt(attempt)
        await self._bind(tracker, account)
        return {"phone_last4": PHONE_CHECKED, "binding_outcome": VERIFIED, "account_number": account,
                LOCKED_SLOT: False}


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
        reset = [SlotSet("phone_last4", None), SlotSet("verification_code", None),
                 SlotSet("verification_method", None), SlotSet("binding_outcome", None),
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
