"""The SMS channel of the gateway: two-way SMS over Aliyun or Tencent Cloud SMS.

``setup(app, config)`` adds the four provider callbacks (``/sms/aliyun/up``,
``/sms/aliyun/report``, ``/sms/tencent/up``, ``/sms/tencent/report``). When SMS_PROVIDER or its
credentials are not set the channel is disabled: one log line at start, 503 on those paths, and
the rest of the product runs as usual. Otherwise the templates file is read and checked at once
(a bad one is a ConfigError, like a bad variable), and a cleanup context (after the gateway's
Redis client and router exist) builds the sender, the outbox and its worker. On shutdown the
worker finishes the message in hand (bounded by the provider timeout) before it is stopped.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from channels.sms.config import SmsConfig
from channels.sms.templates import TemplateBook

log = logging.getLogger(__name__)

PATHS = {
    "/sms/aliyun/up": "aliyun_up",
    "/sms/aliyun/report": "aliyun_report",
    "/sms/tencent/up": "tencent_up",
    "/sms/tencent/report": "tencent_report",
}


class SmsRuntime:
    """The channel inside one gateway app: webhooks, conversation logic, outbox and worker."""

    def __init__(self, config: SmsConfig, book: TemplateBook | None = None,
                 trusted_proxies: tuple = ()) -> None:
        self.config = config
        self.book = book
        self.trusted_proxies = trusted_proxies
        self.channel: Any = None    # channels.sms.channel.SmsChannel once started
        self.webhooks: Any = None   # channels.sms.webhooks.SmsWebhooks once started
        self.outbox: Any = None     # channels.sms.outbox.Outbox once started

    def handler(self, name: str):
        async def handle(request: web.Request) -> web.Response:
            if self.webhooks is None:
                return web.Response(status=503, text="sms channel disabled")
            return await getattr(self.webhooks, name)(request)
        return handle

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: build everything on start, stop the worker on shutdown."""
        from channels.optout import OptOutStore
        from channels.sms.channel import SmsChannel
        from channels.sms.outbox import Outbox
        from channels.sms.providers import sender_from_config
        from channels.sms.quiet_hours import QuietHours
        from channels.sms.ratelimit import RateLimiter
        from channels.sms.templates import SmsRenderer
        from channels.sms.webhooks import SmsWebhooks

        cfg = self.config
        book = self.book or TemplateBook.load(cfg.templates_file)
        unmapped = [kind for kind in ("generic_reply", "fallback", "optout_confirm",
                                      "optin_confirm") if book.get(kind, cfg.provider) is None]
        if unmapped:
            log.warning("sms: no %s template id in %s for %s: those SMS cannot be sent until "
                        "their approved ids are filled in", ", ".join(unmapped),
                        cfg.templates_file, cfg.provider)
        redis, own_redis = _text_redis(_gateway_redis(app))
        sender = sender_from_config(cfg)
        self.outbox = Outbox(
            redis, sender, QuietHours(cfg.quiet_hours, cfg.timezone),
            RateLimiter(redis, {"proactive": cfg.proactive_limits, "reply": cfg.reply_limits}),
            OptOutStore(redis), max_attempts=cfg.max_attempts)
        renderer = SmsRenderer(book, cfg.provider, cfg.sign_name, cfg.max_parts)
        self.channel = SmsChannel(cfg, redis, _gateway_router(app), self.outbox, renderer)
        self.webhooks = SmsWebhooks(cfg, redis, self.outbox, self.channel.handle_inbound,
                                    self.trusted_proxies)
        worker = asyncio.create_task(self.outbox.run_forever(cfg.poll_interval_seconds))
        if not cfg.callback_token:
            log.warning("sms: SMS_CALLBACK_TOKEN is not set; every provider callback is refused")
        log.info("sms channel enabled: %s, sign 【%s】, templates %s", cfg.provider, cfg.sign_name,
                 cfg.templates_file)
        try:
            yield
        finally:
            webhooks, self.webhooks = self.webhooks, None
            self.outbox.stop()
            try:  # a message cut off mid-send is sent again after its lease: let it finish
                await asyncio.wait_for(worker, cfg.send_timeout_seconds + 5)
            except asyncio.TimeoutError:
                log.warning("sms outbox worker did not stop in time; the message it held goes "
                            "out again after its lease")
            await webhooks.drain()
            await sender.close()
            if own_redis:
                await redis.aclose()


SMS_RUNTIME = web.AppKey("sms_runtime", SmsRuntime)


def _gateway_redis(app: web.Application) -> Any:
    from channels.app import REDIS_KEY

    return app[REDIS_KEY]


def _gateway_router(app: web.Application) -> Any:
    from channels.app import ROUTER_KEY

    return app[ROUTER_KEY]


def _text_redis(redis: Any) -> tuple[Any, bool]:
    """A client on the gateway's Redis that answers ``str``; (client, created here)."""
    kwargs = dict(redis.connection_pool.connection_kwargs)
    if kwargs.get("decode_responses"):
        return redis, False
    from redis.asyncio import ConnectionPool, Redis

    kwargs["decode_responses"] = True
    pool = ConnectionPool(connection_class=redis.connection_pool.connection_class, **kwargs)
    return Redis(connection_pool=pool), True


def setup(app: web.Application, config: Any = None) -> SmsRuntime:
    """Register the SMS callbacks on ``app``; ``config`` is the GatewayConfig (its ``sms``
    attribute is used when present, otherwise the SMS_* variables are read here; its
    ``trusted_proxies`` decide whose X-Forwarded-For the callback allowlist believes). Raises
    ConfigError for a bad SMS variable or templates file."""
    sms_config = getattr(config, "sms", None)
    if not isinstance(sms_config, SmsConfig):
        sms_config = SmsConfig.from_env()
    book = TemplateBook.load(sms_config.templates_file) if sms_config.enabled else None
    runtime = SmsRuntime(sms_config, book, tuple(getattr(config, "trusted_proxies", ()) or ()))
    app[SMS_RUNTIME] = runtime
    for path, name in PATHS.items():
        app.router.add_post(path, runtime.handler(name))
    if sms_config.enabled:
        app.cleanup_ctx.append(runtime.lifespan)
    elif sms_config.provider:
        log.warning("sms channel disabled: %s not set (SMS callbacks answer 503)",
                    ", ".join(sms_config.missing))
    else:
        log.info("sms channel disabled: SMS_PROVIDER is not set (SMS callbacks answer 503)")
    return runtime
