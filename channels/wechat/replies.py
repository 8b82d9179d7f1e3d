"""Processing of one queued WeChat job: ask the conversation router, send the answer.

Runs inside the dispatcher (one job at a time per user). Every job that comes from the
customer (a message, a menu click, following, scanning) opens WeChat's 48-hour window
(:func:`channels.wechat.adapter.record_interaction`). A number picks one of the numbered
options offered by the previous answer (:class:`channels.options.OptionMemory`). The answer
goes out through the delivery facade (``deliver``, purpose ``reply``: ordered with agent
messages and notices) and :class:`~channels.wechat.adapter.WeChatAdapter` (customer-service
messages inside the window, WeChat's refusals handled by meaning).
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from channels.messages import Deliver, Message
from channels.wechat.adapter import CHANNEL, WeChatAdapter, fixed_text, record_interaction
from channels.wechat.api import WeChatApi
from channels.wechat.config import WeChatConfig

log = logging.getLogger(__name__)


class Router(Protocol):
    """The gateway's conversation router (``channels.router.ConversationRouter``)."""

    async def handle(self, message: Any) -> list[Any]: ...


class WeChatResponder:
    """The dispatcher's job handler for the 公众号 channel."""

    def __init__(self, config: WeChatConfig, redis: Any, api: WeChatApi, router: Router,
                 deliver: Deliver) -> None:
        self._redis = redis
        self._router = router
        self._deliver = deliver
        self.adapter = WeChatAdapter(config, redis, api)  # registered with the deliverer

    async def __call__(self, openid: str, job: dict[str, Any]) -> None:
        kind = job.get("kind")
        if kind not in ("text", "payload", "notice"):
            log.warning("wechat job of unknown kind %r dropped", kind)
            return
        await record_interaction(self._redis, openid)
        conversation_id = f"{CHANNEL}:{openid}"
        if kind == "notice":
            await self._deliver(conversation_id, [fixed_text(str(job.get("text", "")))], "reply")
            return
        text = str(job.get("text", ""))
        payload = job.get("payload")
        meta = dict(job.get("meta") or {})
        if kind == "text":
            picked = await self.adapter.options.pick(conversation_id, text)
            if picked is not None:
                meta["option"] = picked.title
                text, payload = picked.title, picked.payload
        message = Message(CHANNEL, openid, text, payload=payload, meta=meta)
        replies = await self._router.handle(message)
        await self._deliver(conversation_id, replies, "reply")
