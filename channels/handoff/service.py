"""What happens around a hand-off: the customer's side of it, Rasa's tracker and the ratings.

:class:`HandoffService` is called by the request consumer (:mod:`.requests`), the router (every
customer message, :meth:`HandoffService.divert`), the unclaimed-timeout watcher
(:mod:`.unclaimed`) and the agents' console (claim, reply, transfer, close, take over). State
lives in :class:`~channels.handoff.store.HandoffStore`, so any gateway instance can serve any
step. Everything the customer hears goes through ``deliver(cid, [Reply], "agent")``.

* Opening (a request of the action server, or an agent taking over): Rasa's tracker gets a
  ``pause`` event (``ConversationPaused``); the waiting customer hears once that a person is on
  the way and how many are ahead. Outside business hours no hand-off opens: the customer is told
  the hours and a callback ticket (kind ``callback``) is filed with the tickets backend.
* While open (waiting or active): the customer's messages go to the transcript and the events
  stream, never to Rasa; they get no reply (the waiting notice was said once), except a waiting
  customer who sends 回电: a callback ticket is filed and the assistant takes over again.
* Closing: Rasa's tracker gets ``resume`` (``ConversationResumed``) and the customer is asked
  "请为本次服务评分：回复1-5". The next message, within ``HANDOFF_RATING_MINUTES``, that is a
  score (ASCII, full-width or Chinese digit 1-5, optionally 分 and a comment: "5 很满意") is
  stored against the agent, queue and conversation and thanked; anything else ends the rating
  and goes to the assistant as usual.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import unicodedata

from redis.exceptions import RedisError

from channels.handoff import metrics
from channels.handoff.config import HandoffConfig
from channels.handoff.store import OPEN_STATES, HandoffStore
from channels.messages import Deliver, DeliveryResult, Message, Reply
from channels.notice_context import SEEN_TTL_SECONDS, seen_key
from channels.rasa_client import RasaClient, RasaUnavailable
from channels.router import clean_text, log_id
from integrations.customer_store import CustomerStore
from integrations.errors import IntegrationError
from integrations.masking import mask_account, mask_text
from integrations.tickets import NewTicket, TicketsClient

log = logging.getLogger(__name__)

HOTLINE = "95598"
WAITING_TEXT = "已为您转接人工客服，请稍候。"
AHEAD_TEXT = "您前面还有{ahead}位客户在等待。"
CLAIMED_TEXT = "人工客服已接入，正在为您服务。"
TRANSFER_TEXT = "正在为您转接其他客服，请稍候。"
RATING_TEXT = "人工服务已结束。请为本次服务评分：回复1-5（5为非常满意），数字后可附意见。"
THANKS_TEXT = "感谢您的评价！如还有其他问题，欢迎随时咨询。"
AFTER_HOURS_TEXT = "现在是人工客服的非工作时间（服务时间：{hours}）。"
CALLBACK_TEXT = "已为您登记回电请求，工单号：{ticket}，客服人员将在{when}尽快与您联系。"
NO_TICKET_TEXT = "请在{when}后再联系人工客服。"
URGENT_TEXT = f"如遇停电抢修、用电安全等紧急情况，请直接拨打{HOTLINE}供电服务热线。"
UNCLAIMED_TEXT = ("目前人工客服较忙，您已等待约{minutes}分钟，我们仍在为您排队。"
                  "如不便等待，可回复“回电”，我们将为您登记回电请求，客服人员会尽快与您联系。")
CALLBACK_WORDS = frozenset({"回电", "回电话", "请回电", "回电请求", "请给我回电", "给我回电", "回拨"})

_CN_SCORES = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_RATING = re.compile(r"([1-5一二两三四五])(?![0-9])\s*(?:分|星)?[\s,，.。、:：;；!！~～\-]*(.*)", re.S)
QUEUE_RE = re.compile(r"general|vip|manager:[A-Za-z0-9_.-]{1,32}")


def parse_rating(text: str) -> tuple[int, str] | None:
    """``(score, comment)`` when ``text`` is a 1-5 score: ASCII, full-width or Chinese digit,
    optionally 分/星 and a comment after it ("5 很满意", "５分", "四分，还不错"); else None."""
    cleaned = unicodedata.normalize("NFKC", text or "").strip()
    match = _RATING.fullmatch(cleaned)
    if not match:
        return None
    token = match.group(1)
    score = int(token) if token.isdigit() else _CN_SCORES[token]
    return score, match.group(2).strip()[:200]


def valid_queue(queue: str | None) -> str:
    """``queue`` when it is ``general``, ``vip`` or ``manager:<id>``, else ``general``."""
    return queue if queue and QUEUE_RE.fullmatch(queue) else "general"


class HandoffService:
    """The hand-off's behaviour over its store (see the module docstring)."""

    def __init__(self, store: HandoffStore, deliver: Deliver, rasa: RasaClient | None,
                 config: HandoffConfig, tickets: TicketsClient | None = None,
                 customers: CustomerStore | None = None) -> None:
        self.store = store
        self._deliver = deliver
        self._rasa = rasa
        self.config = config
        self._tickets = tickets
        self._customers = customers

    # ---- opening ----------------------------------------------------------------------------

    async def open(self, cid: str, *, queue: str, reason: str, customer_type: str = "residential",
                   account: str | None = None) -> dict:
        """Open a waiting hand-off for ``cid`` (from a request), or, outside business hours, file
        a callback ticket instead. Returns the record (``new``: whether it opened now) or
        ``{"state": "after_hours", "ticket": <id or "">}``."""
        channel = cid.partition(":")[0]
        existing = await self.store.get(cid)
        if existing and existing.get("state") in OPEN_STATES:  # asked again while waiting/served
            return {**existing, "new": False}
        account = account or await self._account(cid)
        now = self.store.now()
        if not self.config.hours.is_open(now):
            ticket = await self._callback_ticket(cid, account, reason, after_hours=True)
            when = self.config.hours.describe_next(now)
            lines = [AFTER_HOURS_TEXT.format(hours=self.config.hours.describe()),
                     CALLBACK_TEXT.format(ticket=ticket, when=when) if ticket else NO_TICKET_TEXT.format(when=when),
                     URGENT_TEXT]
            await self._say(cid, "".join(lines))
            metrics.EVENTS.labels("after_hours").inc()
            return {"state": "after_hours", "ticket": ticket or ""}
        record = await self.store.request(cid, queue=valid_queue(queue), reason=reason, channel=channel,
                                          customer_type=customer_type, account=account or "")
        if record["new"]:
            metrics.EVENTS.labels("requested").inc()
            await self._pause(cid)
            ahead = await self._ahead(record)
            await self.store.mark_once(cid, "ack")
            await self._say(cid, WAITING_TEXT + (AHEAD_TEXT.format(ahead=ahead) if ahead else ""))
            log.info("hand-off of %s opened in %s", log_id(cid), record.get("queue"))
        return record

    async def take_over(self, cid: str, agent: str, *, queue: str = "general",
                        reason: str = "客服主动接入", customer_type: str = "residential",
                        account: str | None = None) -> dict:
        """An agent takes ``cid`` over from the console (any time, no request needed). Returns
        the record; its ``agent`` says who holds the conversation now."""
        record = await self.store.take_over(
            cid, agent, queue=valid_queue(queue), reason=reason, channel=cid.partition(":")[0],
            customer_type=customer_type, account=account or await self._account(cid) or "")
        if record.get("agent") == agent and record.get("state") == "active":
            metrics.EVENTS.labels("taken_over").inc()
            if record["new"]:
                await self._pause(cid)
            await self._say(cid, CLAIMED_TEXT)
        return record

    # ---- the console's actions -------------------------------------------------------------

    async def claim(self, cid: str, agent: str) -> bool:
        """``agent`` takes a waiting conversation (of two claims one wins); the customer hears
        that a person is there."""
        if not await self.store.claim(cid, agent):
            return False
        metrics.EVENTS.labels("claimed").inc()
        await self._say(cid, CLAIMED_TEXT)
        return True

    async def transfer(self, cid: str, *, queue: str | None = None, agent: str | None = None) -> bool:
        """Move an open hand-off to another queue (waiting again) or agent."""
        if not await self.store.transfer(cid, queue=valid_queue(queue) if queue else None, agent=agent):
            return False
        metrics.EVENTS.labels("transferred").inc()
        await self._say(cid, TRANSFER_TEXT if not agent else CLAIMED_TEXT)
        return True

    async def agent_reply(self, cid: str, agent: str, text: str) -> DeliveryResult:
        """Send ``agent``'s message to the customer on their channel (``deliver(…, "agent")``)
        and record it; ``skipped`` ``not_active`` when the hand-off is not open."""
        text = clean_text(text)
        record = await self.store.get(cid)
        if not text:
            return DeliveryResult("skipped", "empty")
        if not record or record.get("state") not in OPEN_STATES:
            return DeliveryResult("skipped", "not_active")
        await self.store.append_message(cid, "agent", text, agent)
        metrics.MESSAGES.labels("agent").inc()
        return await self._deliver(cid, [Reply(text)], "agent")

    async def close(self, cid: str, agent: str) -> bool:
        """End the hand-off: Rasa resumes, the customer is asked for a 1-5 rating."""
        if not await self.store.close(cid, agent):
            return False
        metrics.EVENTS.labels("closed").inc()
        await self._resume(cid)
        await self._say(cid, RATING_TEXT)
        return True

    # ---- the customer's messages (the router's hook) ---------------------------------------

    async def divert(self, message: Message) -> list[Reply] | None:
        """The router's hook, one Redis round trip for a conversation not handed off: the
        replies when the hand-off takes ``message`` (possibly none), or None when it goes to
        Rasa. A Redis failure sends the message to Rasa (logged, counted)."""
        cid = message.conversation_id
        try:
            state = await self.store.route_state(cid)
            if state in OPEN_STATES:
                return await self._customer_message(cid, state, message)
            if state == "rating":
                return await self._rating(cid, message)
        except (RedisError, OSError) as exc:
            log.warning("hand-off state of %s unavailable (%s); routed to Rasa", log_id(cid),
                        type(exc).__name__)
            metrics.ERRORS.labels("redis").inc()
        return None

    async def _customer_message(self, cid: str, state: str, message: Message) -> list[Reply]:
        text = clean_text(message.text) or clean_text(message.payload)
        # The conversation is in use (pd:seen, the broadcasts' channel choice), as the router
        # marks the messages that go to Rasa.
        await asyncio.gather(self.store.append_message(cid, "customer", text),
                             self.store.redis.set(seen_key(cid), str(int(self.store.now())), ex=SEEN_TTL_SECONDS))
        metrics.MESSAGES.labels("customer").inc()
        if state == "waiting" and unicodedata.normalize("NFKC", text).strip("。.!！ ") in CALLBACK_WORDS:
            return await self._callback_instead(cid)
        if state == "waiting" and await self.store.mark_once(cid, "ack"):
            return [Reply(WAITING_TEXT)]
        return []

    async def _rating(self, cid: str, message: Message) -> list[Reply] | None:
        record = await self.store.get(cid) or {}
        closed_at = float(record.get("closed_at") or 0)
        rating = parse_rating(clean_text(message.text) or clean_text(message.payload))
        fresh = self.store.now() - closed_at <= self.config.rating_minutes * 60
        if rating and fresh and await self.store.record_rating(cid, record.get("handoff_id", ""), *rating):
            metrics.EVENTS.labels("rated").inc()
            metrics.RATINGS.labels(str(rating[0])).inc()
            return [Reply(THANKS_TEXT)]
        await self.store.finish(cid)
        return None

    async def _callback_instead(self, cid: str) -> list[Reply]:
        record = await self.store.get(cid) or {}
        ticket = await self._callback_ticket(cid, record.get("account") or None,
                                             record.get("reason", ""), after_hours=False)
        if not ticket:
            return [Reply(f"抱歉，回电登记暂时没有成功，我们仍在为您排队。{URGENT_TEXT}")]
        await self.store.cancel(cid, "callback")
        await self.store.append_message(cid, "system", f"客户选择回电，工单号：{ticket}")
        await self._resume(cid)
        metrics.EVENTS.labels("callback").inc()
        return [Reply(CALLBACK_TEXT.format(ticket=ticket, when="工作时间内") + "您也可以继续向智能助手咨询其他问题。")]

    # ---- the unclaimed timeout -------------------------------------------------------------

    async def remind_unclaimed(self) -> int:
        """Tell each customer waiting longer than ``HANDOFF_UNCLAIMED_MINUTES`` (once per
        hand-off, across instances) that they are still queued, and offer a callback ticket.
        Returns how many were told."""
        minutes = self.config.unclaimed_minutes
        if minutes <= 0:
            return 0
        told = 0
        for cid in await self.store.overdue(await self.store.queues(), minutes * 60):
            if await self.store.mark_once(cid, "unclaimed"):
                record = await self.store.get(cid) or {}
                waited = (self.store.now() - float(record.get("created_at") or self.store.now())) / 60
                await self._say(cid, UNCLAIMED_TEXT.format(minutes=max(1, round(waited))))
                metrics.EVENTS.labels("unclaimed").inc()
                told += 1
        return told

    # ---- helpers ----------------------------------------------------------------------------

    async def _say(self, cid: str, text: str) -> DeliveryResult:
        """A system message to the customer: in the transcript and on their channel."""
        try:
            await self.store.append_message(cid, "system", text)
        except (RedisError, OSError) as exc:
            log.warning("hand-off transcript of %s: %s", log_id(cid), type(exc).__name__)
        result = await self._deliver(cid, [Reply(text)], "agent")
        if result.status == "failed":
            log.warning("hand-off message to %s failed (%s)", log_id(cid), result.reason)
        return result

    async def _ahead(self, record: dict) -> int:
        waiting = await self.store.waiting([record.get("queue", "general")])
        return sum(1 for r in waiting if float(r.get("created_at") or 0) < float(record.get("created_at") or 0))

    async def _account(self, cid: str) -> str | None:
        if self._customers is None:
            return None
        try:
            return await self._customers.get_binding(cid)
        except (RedisError, OSError, ValueError):
            return None

    async def _pause(self, cid: str) -> None:
        await self._tracker(cid, "pause")

    async def _resume(self, cid: str) -> None:
        await self._tracker(cid, "resume")

    async def _tracker(self, cid: str, event: str) -> None:
        """Record the hand-off in Rasa's tracker; a failure is logged and counted (the gateway
        routes by the store, not by the tracker, so the hand-off goes on)."""
        if self._rasa is None:
            return
        try:
            if event == "pause":
                await self._rasa.pause(cid)
            else:  # a new 转人工 after this one is a new request, not "already registered"
                await self._rasa.resume(cid, {"handoff_requested_at": None})
        except RasaUnavailable as exc:
            log.warning("Rasa tracker %s of %s failed (%s)", event, log_id(cid), exc.reason)
            metrics.ERRORS.labels(f"rasa_{event}").inc()

    async def _callback_ticket(self, cid: str, account: str | None, reason: str,
                               after_hours: bool) -> str | None:
        """File a callback ticket; its id, or None when the backend failed (logged)."""
        if self._tickets is None:
            return None
        now = self.store.now()
        tz = self.config.hours.tz
        promised = self.config.hours.next_open(now) + dt.timedelta(hours=2)
        channel, _, user = cid.partition(":")
        phone = user if channel == "sms" else None
        what = "非工作时间" if after_hours else "排队等待超时"
        try:
            ticket = await self._tickets.create_ticket(NewTicket(
                kind="callback", category="人工回电",
                description=mask_text(f"客户请求人工服务（{what}），请回电。原因：{reason}")[:1000],
                severity="normal", conversation_id=cid,
                promised_by=promised.astimezone(tz).isoformat(timespec="seconds"),
                contact_phone=phone, account_number=account))
        except (IntegrationError, ValueError) as exc:
            log.warning("callback ticket for %s failed (%s)", log_id(cid), type(exc).__name__)
            metrics.ERRORS.labels("callback_ticket").inc()
            return None
        log.info("callback ticket %s for %s (%s)", ticket.ticket_id, log_id(cid),
                 mask_account(account) if account else "no account")
        return ticket.ticket_id

