"""The WeChat official-account (公众号) channel of the gateway.

``setup(app, config)`` (``config``: the GatewayConfig's ``wechat``) adds ``GET``/``POST
/wechat``.  With ``WECHAT_TOKEN`` unset the channel is disabled: a log line at start and 503 on
``/wechat``.  Otherwise a cleanup context (after the gateway's Redis client and router exist)
starts the API client and the per-user dispatcher workers, and stops them on shutdown.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from channels.delivery import deliver_via
from channels.dispatcher import Dispatcher
from channels.keys import REDIS_KEY, ROUTER_KEY, WECHAT_CHANNEL
from channels.wechat.api import WeChatApi
from channels.wechat.config import WeChatConfig
from channels.wechat.interrupted import InterruptedJobs
from channels.wechat.replies import WeChatResponder
from channels.wechat.webhook import WeChatWebhook

log = logging.getLogger(__name__)


class WeChatChannel:
    """Runtime of the channel inside one gateway app: webhook, dispatcher, API client."""

    def __init__(self, config: WeChatConfig) -> None:
        self.config = config
        # Built when the app starts (they need its Redis client and router); None before.
        self.api: WeChatApi | None = None
        self.dispatcher: Dispatcher | None = None
        self.webhook: WeChatWebhook | None = None
        self.responder: WeChatResponder | None = None

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

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: start the API client and dispatcher, stop them at shutdown."""
        redis, router = app[REDIS_KEY], app[ROUTER_KEY]
        cfg = self.config
        self.api = api = WeChatApi(cfg.api_base_url, cfg.app_id, cfg.app_secret, redis,
                                   timeout_seconds=cfg.api_timeout_seconds)
        self.responder = responder = WeChatResponder(cfg, redis, api, router, deliver_via(app))
        self.dispatcher = dispatcher = Dispatcher(
            redis, responder, namespace=cfg.dispatch_namespace,
            on_interrupted=InterruptedJobs(responder), concurrency=cfg.workers,
            job_timeout_seconds=cfg.job_timeout_seconds)
        await dispatcher.start()
        self.webhook = WeChatWebhook(cfg, redis, dispatcher)
        log.info("wechat channel enabled (%s mode, API %s)", cfg.encrypt_mode, cfg.api_base_url)
        try:
            yield
        finally:
            self.webhook = None
            await dispatcher.stop()  # answers in progress may finish (grace ≥ the job timeout)
            await api.close()


__all__ = ["WECHAT_CHANNEL", "WeChatChannel", "setup"]


def setup(app: web.Application, wechat_config: WeChatConfig) -> WeChatChannel:
    """Register ``/wechat`` on ``app`` with the channel's settings (the GatewayConfig's
    ``wechat``, read and validated at start by :mod:`channels.config`)."""
    channel = WeChatChannel(wechat_config)
    app[WECHAT_CHANNEL] = channel
    app.router.add_get("/wechat", channel.handle_get)
    app.router.add_post("/wechat", channel.handle_post)
    if wechat_config.enabled:
        app.cleanup_ctx.append(channel.lifespan)
    else:
        log.info("wechat channel disabled: WECHAT_TOKEN is not set (/wechat answers 503)")
    return channel
