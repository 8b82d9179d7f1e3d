"""The SMS conversation: inbound text → opt-out/opt-in, option numbers, router → templated SMS.

An inbound SMS becomes a conversation ``sms:<11-digit phone>``. Opt-out and opt-in words are
answered here (confirmed once) and never reach the assistant. A number ("1", "２", "二",
"第2个") picks an option of the last answer sent to that number (:mod:`channels.options`,
remembered for ``SMS_OPTIONS_TTL_SECONDS``). The assistant's replies and the confirmations go
out through the delivery facade (``deliver``) and its ``sms`` adapter,
:class:`~channels.sms.adapter.SmsAdapter` (approved templates, the outbox and its rules), like
every other SMS.

Inbound SMS reach :meth:`SmsChannel.handle_job` through the SMS dispatcher
(:mod:`channels.dispatcher`), one message of a number at a time across all gateway instances.
"""
from __future__ import annotations

import logging
from typing import Any

from channels import metrics
from channels.messages import Deliver, Message, Notice, Reply
from channels.options import OptionMemory
from channels.optout import OptOutStore
from channels.router import BUSY_TEXT
from channels.sms.adapter import CHANNEL, SmsAdapter
from channels.sms.config import SmsConfig
from channels.sms.optout import keyword
from channels.sms.outbox import Outbox
from channels.sms.phones import mask
from channels.sms.templates import OPTIN_CONFIRM, OPTOUT_CONFIRM, SmsRenderer

log = logging.getLogger("channels.sms")


class SmsChannel:
    """One gateway instance's SMS conversation logic."""

    def __init__(self, config: SmsConfig, redis, router, outbox: Outbox,
                 renderer: SmsRenderer, deliver: Deliver) -> None:
        self.config = config
        self.redis = redis
        self.router = router
        self.optouts = OptOutStore(redis)
        self._deliver = deliver
        # Registered with the deliverer: every SMS of a conversation goes through ``deliver``.
        self.adapter = SmsAdapter(outbox, renderer, OptionMemory(redis, config.options_ttl_seconds))

    async def handle_inbound(self, phone: str, text: str, meta: dict[str, Any]) -> None:
        """Handle one customer SMS (``phone`` already normalised); the answer (or the
        confirmation of 退订/订阅, a transactional notice) goes through ``deliver``."""
        conversation_id = f"{CHANNEL}:{phone}"
        command = keyword(text)
        if command == "opt_out":
            if await self.optouts.opt_out(conversation_id):
                log.info("sms %s opted out of proactive SMS", mask(phone))
                await self._deliver(conversation_id, Notice(OPTOUT_CONFIRM), "notice")
            return
        if command == "opt_in":
            if await self.optouts.opt_in(conversation_id):
                log.info("sms %s opted back in", mask(phone))
                await self._deliver(conversation_id, Notice(OPTIN_CONFIRM), "notice")
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
        await self._deliver(conversation_id, list(replies or ()), "reply")

    async def handle_job(self, phone: str, job: dict[str, Any]) -> None:
        """The SMS dispatcher's handler: one queued inbound SMS (``{"text", "meta"}``)."""
        await self.handle_inbound(phone, str(job.get("text", "")), dict(job.get("meta") or {}))

    async def handle_interrupted(self, phone: str, job: dict[str, Any]) -> None:
        """The SMS dispatcher's ``on_interrupted``: a message whose turn was cut short (its
        instance died or stopped mid-turn) or failed or timed out.

        An opt-out or opt-in word is handled again: it only writes the opt-out store, which is
        idempotent. Any other message gets the busy reply, asking the customer to send it again,
        and is not re-run: Rasa may already have acted on it (a ticket filed, a queue number
        taken) and its answer may already be in the outbox, so a second run could repeat the
        action or the answer; silence would leave an SMS customer, who sees no typing
        indicator, waiting for nothing. The busy reply counts against SMS_REPLY_LIMITS."""
        text = str(job.get("text", ""))
        if keyword(text):
            await self.handle_job(phone, job)
            return
        log.warning("sms %s: a turn was cut short; answered with the busy reply", mask(phone))
        metrics.BUSY_REPLIES.labels(CHANNEL, "interrupted").inc()
        await self._deliver(f"{CHANNEL}:{phone}", [Reply(BUSY_TEXT)], "reply")
