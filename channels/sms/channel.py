"""The SMS conversation: inbound text → opt-out/opt-in, option numbers, router → templated SMS.

An inbound SMS becomes a conversation ``sms:<11-digit phone>``. Opt-out and opt-in words are
answered here (confirmed once) and never reach the assistant. A reply of "1", "2" … selects an
option of the last numbered list sent to that number (kept in Redis for ``options_ttl``). The
assistant's replies are rendered into approved templates and go through the outbox, whose rules
(rate limits, retries) apply. :meth:`SmsChannel.notify` is the entry for proactive notifications
(reminders, outage notices): opt-out, quiet hours and the proactive budget apply.
"""
from __future__ import annotations

import json
import logging
import unicodedata
from typing import Any

from channels.sms.config import SmsConfig
from channels.sms.optout import OptOutStore, keyword
from channels.sms.outbox import PROACTIVE, REPLY, SYSTEM, Outbox
from channels.sms.phones import mask
from channels.sms.templates import OPTIN_CONFIRM, OPTOUT_CONFIRM, SmsRenderer

log = logging.getLogger("channels.sms")


BUSY_TEXT = "系统繁忙，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"


class _Busy:
    """A stand-in reply with the shared busy text (same attributes as channels.messages.Reply)."""

    text = BUSY_TEXT
    buttons = ()
    custom = None


def _options_key(phone: str) -> str:
    return f"pd:sms:options:{phone}"


class SmsChannel:
    """One gateway instance's SMS conversation logic."""

    def __init__(self, config: SmsConfig, redis, router, outbox: Outbox,
                 renderer: SmsRenderer) -> None:
        self.config = config
        self.redis = redis
        self.router = router
        self.outbox = outbox
        self.renderer = renderer
        self.optouts = OptOutStore(redis)

    async def handle_inbound(self, phone: str, text: str, meta: dict[str, Any]) -> None:
        """Handle one customer SMS (``phone`` already normalised); replies go to the outbox."""
        conversation_id = f"sms:{phone}"
        command = keyword(text)
        if command == "opt_out":
            if await self.optouts.opt_out(phone):
                log.info("sms %s opted out of proactive SMS", mask(phone))
                await self._system(phone, OPTOUT_CONFIRM, conversation_id)
            return
        if command == "opt_in":
            if await self.optouts.opt_in(phone):
                log.info("sms %s opted back in", mask(phone))
                await self._system(phone, OPTIN_CONFIRM, conversation_id)
            return
        from channels.messages import Message

        option = await self._selected_option(phone, text)
        if option is not None:
            title, payload = option
            message = Message("sms", phone, title, payload=payload or None, meta=dict(meta))
        else:
            message = Message("sms", phone, text, meta=dict(meta))
        try:
            replies = await self.router.handle(message)
        except Exception:  # noqa: BLE001 - the router should not raise; the customer still hears back
            log.exception("sms %s: router failed", mask(phone))
            replies = [_Busy()]
        messages, options = self.renderer.render(list(replies or ()))
        if options:
            await self.redis.set(_options_key(phone), json.dumps(options, ensure_ascii=False),
                                 ex=self.config.options_ttl_seconds)
        else:  # "1" must never pick an option of an older question
            await self.redis.delete(_options_key(phone))
        for sms in messages:
            await self.outbox.submit(phone, sms, REPLY, conversation_id=conversation_id)

    async def _selected_option(self, phone: str, text: str) -> tuple[str, str] | None:
        choice = unicodedata.normalize("NFKC", text or "").strip().rstrip("。.")
        if not choice.isdigit() or len(choice) > 2:
            return None
        raw = await self.redis.get(_options_key(phone))
        if not raw:
            return None
        options = json.loads(raw)
        index = int(choice) - 1
        if 0 <= index < len(options):
            await self.redis.delete(_options_key(phone))
            title, payload = options[index]
            return title, payload
        return None

    async def _system(self, phone: str, kind: str, conversation_id: str) -> None:
        sms = self.renderer.of_kind(kind)
        if sms is None:
            log.error("sms: template %r is not approved; %s gets no confirmation", kind, mask(phone))
            return
        await self.outbox.submit(phone, sms, SYSTEM, conversation_id=conversation_id)

    async def notify(self, phone: str, kind: str, params: dict[str, Any],
                     urgent: bool = False) -> str | None:
        """Queue a proactive notification of template ``kind``; returns the message id, or
        None when the kind has no approved template here (logged, never sent as free text)."""
        sms = self.renderer.of_kind(kind, params)
        if sms is None:
            return None
        return await self.outbox.submit(phone, sms, PROACTIVE, urgent=urgent,
                                        conversation_id=f"sms:{phone}")

    async def notify_many(self, phones: list[str], kind: str, params: dict[str, Any],
                          urgent: bool = False) -> list[str]:
        """The same notification to many numbers (outage notices): opt-out, quiet hours and the
        proactive budget per number; those allowed now go out in provider batches."""
        sms = self.renderer.of_kind(kind, params)
        if sms is None:
            return []
        return await self.outbox.submit_many(phones, sms, PROACTIVE, urgent=urgent)
