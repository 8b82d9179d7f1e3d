"""The WeChat official-account (公众号) channel of the gateway.

``setup(app, config)`` adds ``GET``/``POST /wechat``.  With ``WECHAT_TOKEN`` unset the channel is
disabled: a log line at start and 503 on ``/wechat``.  Otherwise a cleanup context (after the
gateway's Redis client and router exist) starts the API client and the per-user dispatcher
workers, and stops them on shutdown.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from channels.wechat.config import WeChatConfig

log = logging.getLogger(__name__)


class WeChatChannel:
    """Runtime of the channel inside one gateway app: webhook, dispatcher, API client."""

    def __init__(self, config: WeChatConfig) -> None:
        self.config = config
        self.api: Any = None          # channels.wechat.api.WeChatApi once started
        self.dispatcher: Any = None   # channels.dispatcher.Dispatcher once started
        self.webhook: Any = None      # channels.wechat.webhook.WeChatWebhook once started
        self.responder: Any = None    # channels.wechat.replies.WeChatResponder once started

    async def handle_get(self, request: web.Request) -> web.Response:
        """URL verification, or 503 while disabled / not started."""
        if self.webhook is None:
            return web.Response(status=503, text="wechat channel disabled")
        return await self.webhook.handle_get(request)

    async def handle_post(self, request: web.Request) -> web.Response:
        """Message and event pushes, or 503 while disabled / not started."""
        if self.webhook is None:
            return web.Response(status=503, text="wechat channel disabled")
        return await self.webhook.handle_post(request)

    async def deliver(self, openid: str, replies: list[Any]) -> None:
        """Queue bot or agent ``replies`` (channels.messages.Reply) for ``openid``: they go out in
        order with the conversation's other answers, buttons rendered as numbered options.
        For hand-off agents and other in-conversation senders; notices go through the delivery
        facade (``channels.delivery``), which checks the opt-out store."""
        if self.dispatcher is None:
            raise RuntimeError("wechat channel is not running")
        await self.dispatcher.enqueue(openid, {"kind": "outbound", "replies": [
            {"text": r.text, "buttons": [[b.title, b.payload] for b in r.buttons], "image": r.image}
            for r in replies]})

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: start the API client and dispatcher, stop them at shutdown."""
        from channels.dispatcher import Dispatcher
        from channels.wechat.api import WeChatApi
        from channels.wechat.interrupted import InterruptedJobs
        from channels.wechat.replies import WeChatResponder
        from channels.wechat.webhook import WeChatWebhook

        redis, router = _gateway_redis(app), _gateway_router(app)
        cfg = self.config
        self.api = WeChatApi(cfg.api_base_url, cfg.app_id, cfg.app_secret, redis,
                             timeout_seconds=cfg.api_timeout_seconds)
        self.responder = WeChatResponder(cfg, redis, self.api, router)
        self.dispatcher = Dispatcher(redis, self.responder, namespace=cfg.dispatch_namespace,
                                     on_interrupted=InterruptedJobs(self.responder), concurrency=cfg.workers,
                                     job_timeout_seconds=cfg.job_timeout_seconds)
        await self.dispatcher.start()
        self.webhook = WeChatWebhook(cfg, redis, self.dispatcher)
        log.info("wechat channel enabled (%s mode, API %s)", cfg.encrypt_mode, cfg.api_base_url)
        try:
            yield
        finally:
            self.webhook = None
            await self.dispatcher.stop()  # answers in progress may finish (grace ≥ the job timeout)
            await self.api.close()


WECHAT_CHANNEL = web.AppKey("wechat_channel", WeChatChannel)


def _gateway_redis(app: web.Application) -> Any:
    from channels.app import REDIS_KEY

    return app[REDIS_KEY]


def _gateway_router(app: web.Application) -> Any:
    from channels.app import ROUTER_KEY

    return app[ROUTER_KEY]


def setup(app: web.Application, config: Any = None) -> WeChatChannel:
    """Register ``/wechat`` on ``app``; ``config`` is the GatewayConfig (its ``wechat`` attribute
    is used when present, otherwise the WECHAT_* variables are read here)."""
    wechat_config = getattr(config, "wechat", None)
    if not isinstance(wechat_config, WeChatConfig):
        wechat_config = WeChatConfig.from_env()
    channel = WeChatChannel(wechat_config)
    app[WECHAT_CHANNEL] = channel
    app.router.add_get("/wechat", channel.handle_get)
    app.router.add_post("/wechat", channel.handle_post)
    if wechat_config.enabled:
        app.cleanup_ctx.append(channel.lifespan)
    else:
        log.info("wechat channel disabled: WECHAT_TOKEN is not set (/wechat answers 503)")
    return channel
