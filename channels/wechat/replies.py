"""Processing of one queued WeChat job: ask the conversation router, send the answer.

Runs inside the dispatcher (one job at a time per user). Every job that comes from the
customer (a message, a menu click, following, scanning) opens WeChat's 48-hour window
(:func:`channels.wechat.adapter.record_interaction`). A number picks one of the numbered
options offered by the previous answer (:class:`channels.options.OptionMemory`). The answer
goes out through :class:`~channels.wechat.adapter.WeChatAdapter` (customer-service messages
inside the window, WeChat's refusals handled by meaning).
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from channels.messages import Button, Message, Reply
from channels.wechat.adapter import CHANNEL, WeChatAdapter, record_interaction
from channels.wechat.api import WeChatApi
from channels.wechat.config import WeChatConfig

log = logging.getLogger(__name__)


class Router(Protocol):
    """The gateway's conversation router (``channels.router.ConversationRouter``)."""

    async def handle(self, message: Any) -> list[Any]: ...


class WeChatResponder:
    """The dispatcher's job handler for the 公众号 channel."""

    def __init__(self, config: WeChatConfig, redis: Any, api: WeChatApi, router: Router) -> None:
        self._redis = redis
        self._router = router
        self.adapter = WeChatAdapter(config, redis, api)

    async def __call__(self, openid: str, job: dict[str, Any]) -> None:
        kind = job.get("kind")
        if kind == "outbound":
            replies = [Reply(str(r.get("text", "")), tuple(Button(str(t), str(p)) for t, p in r.get("buttons", ())),
                             r.get("image")) for r in job.get("replies", ())]
            await self.adapter.send(openid, replies, "agent")
            return
        if kind not in ("text", "payload", "notice"):
            log.warning("wechat job of unknown kind %r dropped", kind)
            return
        await record_interaction(self._redis, openid)
        if kind == "notice":
            await self.adapter.send_fixed_text(openid, str(job.get("text", "")))
            return
        text = str(job.get("text", ""))
        payload = job.get("payload")
        meta = dict(job.get("meta") or {})
        if kind == "text":
            picked = await self.adapter.options.pick(f"{CHANNEL}:{openid}", text)
            if picked is not None:
                meta["option"] = picked.title
                text, payload = picked.title, picked.payload
        message = Message(CHANNEL, openid, text, payload=payload, meta=meta)
        replies = await self._router.handle(message)
        await self.adapter.send(openid, replies, "reply")
