"""SMS as a channel adapter: render into approved templates and hand to the outbox.

- ``reply`` / ``agent``: the replies rendered by :class:`~channels.sms.templates.SmsRenderer`
  (buttons as "回复1 …" options numbered across the whole answer, remembered per conversation
  by :class:`~channels.options.OptionMemory`), submitted with the reply budget;
- ``notice``: the approved template of the notice's kind with its parameters, or the
  ``fallback`` template (pointing to 网上国网, the WeChat account and 95598) when that kind is not
  approved or a parameter is missing, submitted as a proactive SMS (``urgent`` passed on);
  transactional notices (one-time codes, ``verification_code``) go as system messages, never
  replaced by the fallback.

The outbox's state right after submitting becomes the result: sent; queued (with the time it
may go); suppressed → skipped; failed → failed (the outbox already retried what could be).

A broadcast's batch (``send_notices``, called by ``Deliverer.deliver_notices``) submits its keyed
notices together (``Outbox.submit_keyed_many``: Aliyun SendBatchSms, up to 100 numbers with
their own parameters; Tencent SendSms, up to 200 numbers sharing one parameter set), with the
same results as one ``send`` each.

A notice with a ``key`` (a broadcast's idempotency key) is submitted as a keyed outbox message:
submitting the same key to the same number again sends nothing and answers from the first
message's state (see :mod:`channels.sms.outbox`); provider flow control of a keyed notice is
``failed`` ``throttled`` with ``retry`` and ``when`` the provider's suggested time, for the
broadcast engine to back off (an unkeyed message waits in the outbox instead). An urgent
``outage_notice`` uses the ``outage_notice_urgent`` template (text marked 【紧急】) when it is
approved.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from channels.messages import DeliveryResult, Notice, Purpose, Reply
from channels.options import OptionMemory
from channels.sms.outbox import PROACTIVE, REPLY, SYSTEM, THROTTLED, Outbox, keyed_id
from channels.sms.phones import mask
from channels.sms.templates import FALLBACK, OutgoingSms, SmsRenderer

log = logging.getLogger("channels.sms")

CHANNEL = "sms"
URGENT_SUFFIX = "_urgent"  # an urgent notice's own template kind, e.g. outage_notice_urgent
_RANK = {"sent": 0, "queued": 1, "skipped": 2, "failed": 3}


def _result(msg: dict[str, str]) -> DeliveryResult:
    """The DeliveryResult of one outbox message, from its stored state."""
    state = msg.get("state", "")
    if state in ("sent", "delivered"):
        return DeliveryResult("sent")
    if state == "suppressed":
        return DeliveryResult("skipped", msg.get("error_code") or "suppressed")
    if state in ("failed", "undelivered"):
        return DeliveryResult("failed", msg.get("error_code") or msg.get("report_code") or state)
    when = msg.get("not_before")
    if state == "queued" and msg.get("sending_since") and not msg.get("waiting_for"):
        return DeliveryResult("queued", "in_flight")  # an attempt under way, or cut short
    if state == THROTTLED:
        return DeliveryResult("failed", "throttled", float(when) if when else None, retry=True)
    return DeliveryResult("queued", msg.get("waiting_for", ""), float(when) if when else None)


def _worst(results: list[DeliveryResult]) -> DeliveryResult:
    """One result for an answer sent as several SMS: the least successful one."""
    return max(results, key=lambda r: (_RANK[r.status], r.when or 0.0))


class SmsAdapter:
    """Sends replies and notices to mobile numbers through the outbox (see the module doc)."""

    name = CHANNEL

    def __init__(self, outbox: Outbox, renderer: SmsRenderer, options: OptionMemory) -> None:
        self.outbox = outbox
        self.renderer = renderer
        self.options = options

    async def send(self, user_id: str, content: Sequence[Reply] | Notice,
                   purpose: Purpose) -> DeliveryResult:
        """Send replies (``reply``/``agent``) or a :class:`Notice` to the number ``user_id``."""
        if isinstance(content, Notice):
            return await self._notice(user_id, content)
        replies = list(content)
        messages, options = self.renderer.render(replies)
        await self.options.remember(f"{CHANNEL}:{user_id}", options)
        if not messages:
            if any(r.text.strip() or r.buttons for r in replies):
                return DeliveryResult("failed", "no_template")  # logged by the renderer
            return DeliveryResult("skipped", "empty")
        return _worst([await self._submit(user_id, sms, REPLY) for sms in messages])

    async def send_notices(self, items: Sequence[tuple[str, Notice]]) -> list[DeliveryResult]:
        """:meth:`send` of many notices (a broadcast's batch): the keyed proactive ones through
        ``Outbox.submit_keyed_many`` (one batch of Redis work, as few provider calls as the
        templates allow), the others one by one."""
        results: list[DeliveryResult | None] = [None] * len(items)
        batch: list[tuple[int, tuple[str, OutgoingSms, str, bool]]] = []
        for i, (phone, notice) in enumerate(items):
            if notice.transactional or not notice.key:
                results[i] = await self._notice(phone, notice)
                continue
            sms = self._proactive_sms(phone, notice)
            if sms is None:
                results[i] = DeliveryResult("failed", "no_template")
            else:
                batch.append((i, (phone, sms, notice.key, notice.urgent)))
        if batch:
            states = await self.outbox.submit_keyed_many([item for _i, item in batch])
            for (i, (phone, _sms, key, _urgent)), state in zip(batch, states):
                results[i] = DeliveryResult("sent") if state == "sent" \
                    else _result(await self.outbox.get(keyed_id(key, phone)))
        return results  # type: ignore[return-value]

    def _proactive_sms(self, phone: str, notice: Notice) -> OutgoingSms | None:
        """A non-transactional notice's SMS: its template, else the fallback (None: neither)."""
        sms = self._notice_sms(notice)
        if sms is None:
            log.warning("sms: notice %r to %s sent as the fallback template", notice.kind,
                        mask(phone))
            sms = self.renderer.of_kind(FALLBACK)
        return sms

    async def _notice(self, phone: str, notice: Notice) -> DeliveryResult:
        if not notice.transactional:
            sms = self._proactive_sms(phone, notice)
            if sms is None:
                return DeliveryResult("failed", "no_template")
            return await self._submit(phone, sms, PROACTIVE, notice.urgent, notice.key)
        sms = self._notice_sms(notice)
        # Transactional: asked for by the customer (no opt-out, no quiet hours, no fallback).
        if sms is None:
            log.error("sms: no approved %r template; %s does not get it", notice.kind, mask(phone))
            return DeliveryResult("failed", "no_template")
        return await self._submit(phone, sms, SYSTEM)

    def _notice_sms(self, notice: Notice) -> OutgoingSms | None:
        """The notice in its own approved template (an urgent one's ``<kind>_urgent`` first),
        None when not approved or incomplete."""
        book, provider = self.renderer.book, self.renderer.provider
        template = (notice.urgent and book.get(notice.kind + URGENT_SUFFIX, provider)) \
            or book.get(notice.kind, provider)
        if template is None:
            return None
        missing = [p for p in template.params if not str(notice.params.get(p) or "").strip()]
        if missing:
            log.warning("sms: notice %r lacks %s", notice.kind, ", ".join(missing))
            return None
        return self.renderer.make(template, notice.params)

    async def _submit(self, phone: str, sms: OutgoingSms, send_class: str,
                      urgent: bool = False, key: str = "") -> DeliveryResult:
        msg_id = await self.outbox.submit(phone, sms, send_class, urgent=urgent,
                                          conversation_id=f"{CHANNEL}:{phone}", key=key)
        return _result(await self.outbox.get(msg_id))
