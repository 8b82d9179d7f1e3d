"""The WeChat official account as a channel adapter: render and transport only.

WeChat lets an official account send customer-service messages (客服消息) to a customer only
within 48 hours of the customer's last interaction (a message, a menu click, following,
scanning); outside that window only template messages (模板消息) go out. The responder records
every interaction (:func:`record_interaction`, ``pd:wechat:last_seen:<openid>``).

- ``reply`` / ``agent``: rendered as texts with numbered options (remembered per conversation by
  :class:`~channels.options.OptionMemory`), sent as customer-service messages inside the window;
  outside it as the ``generic_reply`` template when one is configured and the text fits its
  field, else skipped (``outside_window``).
- ``notice``: the template message of the notice's kind (``bot/wechat_templates.yml``); without a
  template id, the kind's customer-service text inside the window; else skipped. With
  WECHAT_NOTICE_TEXT_IN_WINDOW on, a kind with both goes as its text inside the window and as
  its template outside it (or when WeChat refuses the text: 45015 window closed, 45047 quota).

WeChat's refusals by meaning: 43004 (not following) → skipped ``not_following``; 45015 (outside
the window) and 45047 (customer-service quota for this customer used up) → the template
instead; 40003 (bad openid) → failed ``invalid_openid``; 48002 (the customer refuses the
account's messages) → skipped ``refuses_messages``; anything else → failed, ``retry`` when the
error is transient (the API client already retried what was worth retrying at once).

Keyed notices (``Notice.key``, a broadcast's ``bc:<campaign>:<customer>``) go out at most once
per openid, however often they are delivered again (a re-run, a resumed campaign):
- a template message carries a digest of the key as WeChat's ``client_msg_id``
  (:func:`client_msg_id`; the key itself names the customer's account), so
  WeChat itself sends one message for a repeated send within 10 minutes; once WeChat answered,
  the msgid is recorded (``pd:wechat:notice:<openid>:<key>``, 30 days) and a later delivery of
  the key is answered from the record (``sent`` ``duplicate``) without calling WeChat. The
  msgid is also mapped to the key (``pd:wechat:template-notice:<msgid>``, 7 days) so the
  ``TEMPLATESENDJOBFINISH`` report reaches ``pd:notice:reports``. In-flight window: a worker
  killed after WeChat accepted but before the record was written resends with the same
  ``client_msg_id`` when the key is delivered again, which WeChat de-duplicates when that
  happens within 10 minutes; a resume later than that may send a second message.
- a customer-service message has no de-duplication id: the key is recorded as ``sending``
  before the call and ``sent`` after it (a refusal or transport failure removes the mark). A
  delivery that finds ``sent`` is answered from the record; one that finds ``sending`` (the
  previous worker died mid-call, or its send outlived the delivery turn's lock) sends nothing
  and answers ``sent`` ``unconfirmed``: at most once, so a worker killed before its request
  reached WeChat loses that message (counted by
  ``powerdesk_wechat_notice_unconfirmed_total``). A transport timeout of a customer-service
  send may have reached the customer and is tried again: that one may arrive twice.
- throttling (45009 daily API quota, 45011 minute quota, 45047 customer-service quota of this
  customer) of a keyed notice is ``failed`` ``throttled`` with ``retry`` (``when``: the next
  midnight in China for the daily quota, else None) and is not retried inside the client: the
  broadcast engine backs off. Unkeyed sends keep the behaviour above.
An urgent notice gets the parameter ``urgent_mark`` = 【紧急】 (``""`` otherwise), which the
templates put first (``bot/wechat_templates.yml``).

A broadcast's batch (``send_notices``) sends its keyed template notices concurrently with one
read of their records before and one write after (one command each, :mod:`channels.redis_batch`;
one key per write, so it works on a Redis Cluster), answering as
``send`` would for each; the rest of the batch goes one ``send`` at a time.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from channels.messages import DeliveryResult, Notice, Purpose, Reply
from channels.options import OptionMemory
from channels.optout import OptOutStore
from channels.redis_batch import KeyOps
from channels.redis_text import redis_text
from channels.wechat import metrics
from channels.wechat.api import WeChatApi
from channels.wechat.config import WeChatConfig
from channels.wechat.errors import WeChatApiError
from channels.wechat.render import render_replies, split_text
from channels.wechat.templates import REPLY_KIND, REPLY_PARAM

log = logging.getLogger(__name__)

CHANNEL = "wechat"
WINDOW_SECONDS = 48 * 3600
_UNDELIVERABLE_TTL = 48 * 3600
NOT_FOLLOWING, OUTSIDE_WINDOW, OVER_LIMIT, INVALID_OPENID = 43004, 45015, 45047, 40003
REFUSES_MESSAGES = 48002
DAILY_QUOTA = 45009
_FIXED_TEXT = "wechat_fixed_text"  # the custom payload marking a reply made by fixed_text()
NOTICE_RECORD_TTL = 30 * 86400     # how long a keyed notice's record answers repeats
TEMPLATE_KEY_TTL = 7 * 86400       # how long a template's msgid maps to its notice key
URGENT_MARK = "【紧急】"
CHINA = ZoneInfo("Asia/Shanghai")


def client_msg_id(key: str) -> str:
    """The ``client_msg_id`` of a template send for notice ``key``: a digest of it, so it is the
    same on every send while WeChat never sees the key (a broadcast's names the 户号)."""
    return "k" + hashlib.sha256(key.encode()).hexdigest()[:40]


def notice_record_key(openid: str, key: str) -> str:
    """Redis hash recording the keyed notice ``key`` to ``openid`` (state, via, msgid, at)."""
    return f"pd:wechat:notice:{openid}:{key}"


def template_notice_key(msg_id: int | str) -> str:
    """Redis key holding the notice key of template message ``msg_id`` (for its report)."""
    return f"pd:wechat:template-notice:{msg_id}"


def last_seen_key(openid: str) -> str:
    """Redis key of the unix time of ``openid``'s last interaction with the account."""
    return f"pd:wechat:last_seen:{openid}"


def undeliverable_key(openid: str) -> str:
    """Redis hash recording why WeChat last refused a message to ``openid``."""
    return f"pd:wechat:undeliverable:{openid}"


def fixed_text(text: str) -> Reply:
    """One of the gateway's own texts (welcome, "please send text", busy) as a reply that
    leaves the options on offer alone (:meth:`WeChatAdapter.send_fixed_text`)."""
    return Reply(text, custom={_FIXED_TEXT: True})


async def record_interaction(redis: Any, openid: str, at: float | None = None) -> None:
    """The customer interacted at ``at`` (unix time, default now): the 48-hour window opens."""
    at = time.time() if at is None else at
    await redis.set(last_seen_key(openid), str(int(at)), ex=WINDOW_SECONDS)


class WeChatAdapter:
    """Sends replies and notices to one official account's followers (see the module doc)."""

    name = CHANNEL

    def __init__(self, config: WeChatConfig, redis: Any, api: WeChatApi,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._redis = redis
        self._api = api
        self._clock = clock
        self.options = OptionMemory(redis, config.options_ttl_seconds)
        self._optouts = OptOutStore(redis)

    async def in_window(self, openid: str) -> bool:
        """True while ``openid`` may get customer-service messages (48 h after interacting)."""
        raw = await self._redis.get(last_seen_key(openid))
        try:
            return raw is not None and self._clock() - float(raw) < WINDOW_SECONDS
        except ValueError:
            return False

    async def send(self, user_id: str, content: Sequence[Reply] | Notice,
                   purpose: Purpose) -> DeliveryResult:
        """Send replies (``reply``/``agent``) or a :class:`Notice` to the openid ``user_id``."""
        if isinstance(content, Notice):
            return await self._notice(user_id, content)
        replies = list(content)
        if len(replies) == 1 and replies[0].custom == {_FIXED_TEXT: True}:
            return await self.send_fixed_text(user_id, replies[0].text)
        return await self._replies(user_id, replies)

    async def send_fixed_text(self, openid: str, text: str) -> DeliveryResult:
        """One of the gateway's own texts (welcome, "please send text", busy), sent like a reply
        but leaving the options on offer alone: it asks nothing, and the customer may still
        answer the previous question (or repeat a pick that was interrupted)."""
        texts = split_text(text, self._config.reply_max_bytes)
        if not texts:
            return DeliveryResult("skipped", "empty")
        if await self.in_window(openid):
            return await self._customer_service(openid, texts, self._reply_template)
        return await self._reply_template(openid, texts)

    async def _replies(self, openid: str, replies: list[Reply]) -> DeliveryResult:
        rendered = render_replies(replies, self._config.reply_max_bytes)
        conversation_id = f"{CHANNEL}:{openid}"
        # Stored before sending: the customer's next message must find this answer's options.
        await self.options.remember(conversation_id, rendered.options)
        if not rendered.texts:
            return DeliveryResult("skipped", "empty")
        if await self.in_window(openid):
            result = await self._customer_service(openid, list(rendered.texts), self._reply_template)
        else:
            result = await self._reply_template(openid, list(rendered.texts))
        if result.status in ("skipped", "failed"):
            # Nothing reached the customer: neither this answer's options nor older ones apply.
            await self.options.remember(conversation_id, ())
        return result

    async def _reply_template(self, openid: str, texts: list[str]) -> DeliveryResult:
        template = self._config.templates.get(REPLY_KIND)
        data = template.data({REPLY_PARAM: "\n".join(texts)}, shorten=False) \
            if template and template.template_id else None
        if data is None:
            return DeliveryResult("skipped", "outside_window")
        return await self._template(openid, template.template_id, data, template.url)

    async def send_notices(self, items: Sequence[tuple[str, Notice]]) -> list[DeliveryResult]:
        """:meth:`send` of many notices (a broadcast's batch): keyed template notices share
        their Redis work (one command reading their records, one writing them) and go to
        WeChat concurrently; every other notice goes one by one. Same results as :meth:`send`."""
        results: list[DeliveryResult | None] = [None] * len(items)
        keyed: list[tuple[int, str, Notice, Any]] = []
        for i, (openid, notice) in enumerate(items):
            template = self._config.templates.get(notice.kind)
            if (notice.key and template is not None and template.template_id
                    and not self._config.notice_text_in_window):
                keyed.append((i, openid, notice, template))
            else:
                results[i] = await self._notice(openid, notice)
        if not keyed:
            return results  # type: ignore[return-value]
        read = KeyOps()
        for _i, openid, notice, _template in keyed:
            read.hgetall(notice_record_key(openid, notice.key))
        records = await read.run(self._redis)
        going = []
        for entry, record in zip(keyed, records):
            answered = self._answer_from(record, entry[2].key)
            if answered is not None:
                results[entry[0]] = answered
            else:
                going.append(entry)

        async def send(openid: str, notice: Notice, template: Any) -> int | DeliveryResult:
            params = {**notice.params, "urgent_mark": URGENT_MARK if notice.urgent else ""}
            try:
                return await self._api.send_template(
                    openid, template.template_id, template.data(params), template.url or None,
                    client_msg_id=client_msg_id(notice.key), retry_throttled=False)
            except WeChatApiError as exc:
                await self._record_refusal(openid, exc)
                return self._refused(exc, keyed=True)

        # Every accepted send is recorded, whatever happened to the others.
        answers = await asyncio.gather(*(send(openid, notice, template)
                                         for _i, openid, notice, template in going),
                                       return_exceptions=True)
        accepted = [(entry, msg_id) for entry, msg_id in zip(going, answers)
                    if isinstance(msg_id, int)]
        if accepted:
            at = str(int(self._clock()))
            write = KeyOps()
            for (_i, openid, notice, _template), msg_id in accepted:
                self._record_template(write, openid, notice.key, msg_id, at)
            await write.run(self._redis)
        for (i, *_rest), answer in zip(going, answers):
            if isinstance(answer, DeliveryResult):
                results[i] = answer
            elif isinstance(answer, (RedisError, OSError)):
                results[i] = DeliveryResult("failed", "redis_unavailable", retry=True)
            elif isinstance(answer, BaseException):
                log.error("wechat notice send failed: %s", type(answer).__name__, exc_info=answer)
                results[i] = DeliveryResult("failed", "error", retry=True)
            else:
                metrics.SENDS.labels("ok").inc()
                results[i] = DeliveryResult("sent")
        return results  # type: ignore[return-value]

    @staticmethod
    def _record_template(ops: KeyOps, openid: str, key: str, msg_id: int, at: str) -> None:
        """Add the writes recording the keyed template notice ``key`` WeChat accepted: the
        msgid → key map first, then the record. Each write is one key and they need not be
        atomic (so they work on a Redis Cluster): a crash between them leaves a map without a
        record, and the key is sent again with the same ``client_msg_id`` (the in-flight
        window of the module doc)."""
        ops.set(template_notice_key(msg_id), key, px=TEMPLATE_KEY_TTL * 1000)
        ops.hset_expire(notice_record_key(openid, key), {
            "state": "sent", "via": "template", "msgid": str(msg_id), "at": at}, NOTICE_RECORD_TTL)

    async def _notice(self, openid: str, notice: Notice) -> DeliveryResult:
        template = self._config.templates.get(notice.kind)
        if template is None:
            log.warning("wechat: no template configured for notice kind %r", notice.kind)
            return DeliveryResult("skipped", "no_template")
        params = {**notice.params, "urgent_mark": URGENT_MARK if notice.urgent else ""}
        if notice.key:
            answered = await self._answered(openid, notice.key)
            if answered is not None:
                return answered
        text = template.customer_service_text(params)
        if template.template_id and text and self._config.notice_text_in_window \
                and await self.in_window(openid):
            result = await self._notice_text(openid, text, notice.key)
            if result.reason not in ("outside_window", "over_limit", "throttled"):
                return result
        if template.template_id:
            return await self._template(openid, template.template_id, template.data(params),
                                        template.url, notice.key)
        if not text:
            return DeliveryResult("skipped", "no_template")
        if not await self.in_window(openid):
            return DeliveryResult("skipped", "outside_window")
        return await self._notice_text(openid, text, notice.key)

    async def _notice_text(self, openid: str, text: str, key: str) -> DeliveryResult:
        if key:
            return await self._keyed_customer_service(openid, text, key)
        return await self._customer_service(openid, [text], None)

    async def _answered(self, openid: str, key: str) -> DeliveryResult | None:
        """The answer to a repeated keyed notice from its record, None when it is to be sent."""
        raw = await self._redis.hgetall(notice_record_key(openid, key))
        return self._answer_from({redis_text(k): redis_text(v) for k, v in raw.items()}, key)

    @staticmethod
    def _answer_from(record: dict[str, str], key: str) -> DeliveryResult | None:
        """:meth:`_answered` of a record already read."""
        if record.get("state") == "sent":
            return DeliveryResult("sent", "duplicate")
        if record.get("state") == "sending" and record.get("via") == "cs":
            metrics.NOTICE_UNCONFIRMED.inc()
            log.warning("wechat notice %s: an earlier customer-service send has no recorded "
                        "outcome; not sent again (at most once)", key.rsplit(":", 1)[0])
            return DeliveryResult("sent", "unconfirmed")
        return None

    async def _keyed_customer_service(self, openid: str, text: str, key: str) -> DeliveryResult:
        record = notice_record_key(openid, key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(record, mapping={"state": "sending", "via": "cs",
                                       "at": str(int(self._clock()))})
            pipe.expire(record, NOTICE_RECORD_TTL)
            await pipe.execute()
        try:
            await self._api.send_text(openid, text, retry_throttled=False)
        except WeChatApiError as exc:
            await self._redis.delete(record)  # answered, or never answered: not sent
            await self._record_refusal(openid, exc)
            if exc.errcode == OUTSIDE_WINDOW:
                await self._redis.delete(last_seen_key(openid))
                return DeliveryResult("skipped", "outside_window")
            return self._refused(exc, keyed=True)
        await self._redis.hset(record, "state", "sent")
        metrics.SENDS.labels("ok").inc()
        return DeliveryResult("sent")

    async def _customer_service(self, openid: str, texts: list[str],
                                fallback: Callable[[str, list[str]], Any] | None) -> DeliveryResult:
        """Send ``texts`` in order; on 45015/45047 the rest goes through ``fallback``."""
        for index, text in enumerate(texts):
            try:
                await self._api.send_text(openid, text)
            except WeChatApiError as exc:
                await self._record_refusal(openid, exc)
                if exc.errcode in (OUTSIDE_WINDOW, OVER_LIMIT):
                    if exc.errcode == OUTSIDE_WINDOW:
                        await self._redis.delete(last_seen_key(openid))
                    if fallback is not None:
                        result = await fallback(openid, texts[index:])
                        if result.status != "skipped":
                            return result
                    return DeliveryResult(
                        "skipped", "outside_window" if exc.errcode == OUTSIDE_WINDOW else "over_limit")
                return self._refused(exc)
            metrics.SENDS.labels("ok").inc()
        return DeliveryResult("sent")

    async def _template(self, openid: str, template_id: str, data: dict[str, Any],
                        url: str, key: str = "") -> DeliveryResult:
        try:
            msg_id = await self._api.send_template(
                openid, template_id, data, url or None,
                client_msg_id=client_msg_id(key) if key else None, retry_throttled=not key)
        except WeChatApiError as exc:
            await self._record_refusal(openid, exc)
            return self._refused(exc, keyed=bool(key))
        if key:
            write = KeyOps()
            self._record_template(write, openid, key, msg_id, str(int(self._clock())))
            await write.run(self._redis)
        metrics.SENDS.labels("ok").inc()
        return DeliveryResult("sent")

    def _refused(self, exc: WeChatApiError, keyed: bool = False) -> DeliveryResult:
        if keyed and exc.is_throttled:
            when = None
            if exc.errcode == DAILY_QUOTA:  # the daily quotas start over at midnight (China)
                today = datetime.fromtimestamp(self._clock(), CHINA).date()
                when = datetime.combine(today + timedelta(days=1), datetime.min.time(),
                                        CHINA).timestamp()
            return DeliveryResult("failed", "throttled", when=when, retry=True)
        if exc.errcode == NOT_FOLLOWING:
            return DeliveryResult("skipped", "not_following")
        if exc.errcode == REFUSES_MESSAGES:
            return DeliveryResult("skipped", "refuses_messages")
        if exc.errcode == INVALID_OPENID:
            return DeliveryResult("failed", "invalid_openid", retry=False)
        reason = "unavailable" if exc.errcode is None else f"errcode_{exc.errcode}"
        return DeliveryResult("failed", reason, retry=exc.is_transient)

    async def _record_refusal(self, openid: str, exc: WeChatApiError) -> None:
        metrics.SENDS.labels("undeliverable" if exc.is_undeliverable else "failed").inc()
        if not exc.is_undeliverable:
            log.error("wechat send failed: %s", exc)
            return
        log.warning("wechat message not deliverable (errcode %s)", exc.errcode)
        await self._redis.hset(undeliverable_key(openid), mapping={
            "errcode": str(exc.errcode), "errmsg": exc.errmsg[:200], "at": str(int(self._clock()))})
        await self._redis.expire(undeliverable_key(openid), _UNDELIVERABLE_TTL)
        if exc.errcode in (NOT_FOLLOWING, REFUSES_MESSAGES):
            # Not following / refusing messages: proactive messages must stop as well.
            await self._optouts.opt_out(f"{CHANNEL}:{openid}", at=self._clock())
