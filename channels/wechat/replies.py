"""Processing of one queued WeChat job: ask the conversation router, send the answer.

Runs inside the dispatcher (one job at a time per user).  A bare number answers the numbered
options of the previous reply; the answer is rendered for WeChat and sent through the
customer-service message API.  WeChat refusals are handled by meaning: outside the 48-hour
window, unsubscribed, blocked or over quota → record and stop; anything else is logged, never
retried hot (the API client already retried what was worth retrying).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from channels.wechat import metrics
from channels.wechat.api import WeChatApi
from channels.wechat.config import WeChatConfig
from channels.wechat.errors import WeChatApiError
from channels.wechat.render import Option, option_number, render_replies
from channels.wechat.webhook import optout_key

log = logging.getLogger(__name__)

CHANNEL = "wechat"
_UNDELIVERABLE_TTL = 48 * 3600


def options_key(openid: str) -> str:
    """Redis key of the numbered options last offered to ``openid``."""
    return f"pd:wechat:options:{openid}"


def undeliverable_key(openid: str) -> str:
    """Redis hash recording why WeChat last refused a message to ``openid``."""
    return f"pd:wechat:undeliverable:{openid}"


class Router(Protocol):
    """The gateway's conversation router (``channels.router.ConversationRouter``)."""

    async def handle(self, message: Any) -> list[Any]: ...


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class WeChatResponder:
    """The dispatcher's job handler for the 公众号 channel."""

    def __init__(self, config: WeChatConfig, redis: Any, api: WeChatApi, router: Router) -> None:
        self._config = config
        self._redis = redis
        self._api = api
        self._router = router

    async def __call__(self, openid: str, job: dict[str, Any]) -> None:
        kind = job.get("kind")
        if kind == "notice":
            await self.send(openid, [str(job.get("text", ""))])
            return
        if kind == "outbound":
            from channels.messages import Button, Reply

            replies = [Reply(str(r.get("text", "")), tuple(Button(str(t), str(p)) for t, p in r.get("buttons", ())),
                             r.get("image")) for r in job.get("replies", ())]
            await self._deliver(openid, replies)
            return
        if kind not in ("text", "payload"):
            log.warning("wechat job of unknown kind %r dropped", kind)
            return
        from channels.messages import Message

        text = str(job.get("text", ""))
        payload = job.get("payload")
        meta = dict(job.get("meta") or {})
        if kind == "text":
            picked = await self._picked_option(openid, text)
            if picked is not None:
                meta["option"] = picked.title
                text, payload = picked.title, picked.payload
        message = Message(CHANNEL, openid, text, payload=payload, meta=meta)
        replies = await self._router.handle(message)
        await self._deliver(openid, replies)

    async def _deliver(self, openid: str, replies: list[Any]) -> None:
        rendered = render_replies(replies, self._config.reply_max_bytes)
        await self._remember_options(openid, rendered.options)
        await self.send(openid, list(rendered.texts))

    async def _picked_option(self, openid: str, text: str) -> Option | None:
        number = option_number(text)
        if number is None:
            return None
        raw = _text(await self._redis.get(options_key(openid)))
        if not raw:
            return None
        try:
            options = [Option(str(o[0]), str(o[1])) for o in json.loads(raw)]
        except (ValueError, TypeError, IndexError):
            return None
        return options[number - 1] if number <= len(options) else None

    async def _remember_options(self, openid: str, options: tuple[Option, ...]) -> None:
        if options:
            await self._redis.set(options_key(openid),
                                  json.dumps([[o.title, o.payload] for o in options], ensure_ascii=False),
                                  ex=self._config.options_ttl_seconds)
        else:
            await self._redis.delete(options_key(openid))

    async def send(self, openid: str, messages: list[str]) -> bool:
        """Send ``messages`` in order; stop at the first refusal. True when all were sent."""
        for content in messages:
            if not content:
                continue
            try:
                await self._api.send_text(openid, content)
                metrics.SENDS.labels("ok").inc()
            except WeChatApiError as exc:
                await self._record_failure(openid, exc)
                return False
        return True

    async def _record_failure(self, openid: str, exc: WeChatApiError) -> None:
        metrics.SENDS.labels("undeliverable" if exc.is_undeliverable else "failed").inc()
        if exc.is_undeliverable:
            log.warning("wechat message not deliverable (errcode %s); recorded, not retried", exc.errcode)
            await self._redis.hset(undeliverable_key(openid), mapping={
                "errcode": str(exc.errcode), "errmsg": exc.errmsg[:200], "at": str(int(time.time()))})
            await self._redis.expire(undeliverable_key(openid), _UNDELIVERABLE_TTL)
            if exc.errcode in (43004, 48002):
                # Not following / refusing messages: proactive messages must stop as well.
                await self._redis.set(optout_key(openid), str(int(time.time())))
        else:
            log.error("wechat customer-service send failed: %s", exc)
