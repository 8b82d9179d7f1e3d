"""The SMS conversation: inbound text → opt-out/opt-in, option numbers, router → templated SMS.

An inbound SMS becomes a conversation ``sms:<11-digit phone>``. Opt-out and opt-in words are
answered here (confirmed once) and never reach the assistant. A number ("1", "２", "二",
"第2个") picks an option of the last answer sent to that number (:mod:`channels.options`,
remembered for ``SMS_OPTIONS_TTL_SECONDS``). The assistant's replies go out through
:class:`~channels.sms.adapter.SmsAdapter` (approved templates, the outbox and its rules);
proactive notices are sent through the same adapter by the delivery facade.
"""
from __future__ import annotations

import logging
from typing import Any

from channels.messages import Message, Reply
from channels.options import OptionMemory
from channels.optout import OptOutStore
from channels.sms.adapter import CHANNEL, SmsAdapter
from channels.sms.config import SmsConfig
from channels.sms.optout import keyword
from channels.sms.outbox import SYSTEM, Outbox
from channels.sms.phones import mask
from channels.sms.templates import OPTIN_CONFIRM, OPTOUT_CONFIRM, SmsRenderer

log = logging.getLogger("channels.sms")


BUSY_TEXT = "系统繁忙，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"


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
        self.adapter = SmsAdapter(outbox, renderer, OptionMemory(redis, config.options_ttl_seconds))

    async def handle_inbound(self, phone: str, text: str, meta: dict[str, Any]) -> None:
        """Handle one customer SMS (``phone`` already normalised); replies go to the outbox."""
        conversation_id = f"{CHANNEL}:{phone}"
        command = keyword(text)
        if command == "opt_out":
            if await self.optouts.opt_out(conversation_id):
                log.info("sms %s opted out of proactive SMS", mask(phone))
                await self._system(phone, OPTOUT_CONFIRM, conversation_id)
            return
        if command == "opt_in":
            if await self.optouts.opt_in(conversation_id):
                log.info("sms %s opted back in", mask(phone))
                await self._system(phone, OPTIN_CONFIRM, conversation_id)
            return
        option = await self.adapter.options.pick(conversation_id, text)
        if option is not None:
            message = Message(CHANNEL, phone, option.title, payload=option.payload or None,
                              meta={**meta, "option": option.title})
        else:
            message = Message(CHANNEL, phone, text, meta=dict(meta))
        try:
            replies = await self.router.handle(message)
        except Exception:  # noqa: BLE001 - the router should not raise; the customer still hears back
            log.exception("sms %s: router failed", mask(phone))
            replies = [Reply(BUSY_TEXT)]
        await self.adapter.send(phone, list(replies or ()), "reply")

    async def _system(self, phone: str, kind: str, conversation_id: str) -> None:
        sms = self.renderer.of_kind(kind)
        if sms is None:
            log.error("sms: template %r is not approved; %s gets no confirmation", kind, mask(phone))
            return
        await self.outbox.submit(phone, sms, SYSTEM, conversation_id=conversation_id)
