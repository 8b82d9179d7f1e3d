"""The SMS channel of the gateway: two-way SMS over Aliyun or Tencent Cloud SMS.

``setup(app, config, trusted_proxies)`` (``config``: the GatewayConfig's ``sms``) adds the four
provider callbacks (``/sms/aliyun/up``, ``/sms/aliyun/report``, ``/sms/tencent/up``,
``/sms/tencent/report``). When SMS_PROVIDER or its credentials are not set the channel is
disabled: one log line at start, 503 on those paths, and the rest of the product runs as usual.
Otherwise (the templates file was read and checked with the configuration) a cleanup context
(after the gateway's Redis client and router exist) builds the sender, the outbox and its
worker, and the per-number dispatcher (:mod:`channels.dispatcher`, namespace
``pd:sms:dispatch``): the callbacks queue each inbound SMS on its number's queue and answer the
provider at once, and whichever instance takes the number answers its messages one at a time,
in order. On shutdown the dispatcher lets turns in progress finish (up to
SMS_JOB_TIMEOUT_SECONDS) and the outbox worker finishes the message in hand (bounded by the
provider timeout) before they are stopped.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from aiohttp import web

from channels.client_address import Network
from channels.delivery import deliver_via
from channels.dispatcher import Dispatcher
from channels.key_migration import migrate_at_start
from channels.keys import CONFIG_KEY, REDIS_KEY, ROUTER_KEY, SMS_RUNTIME
from channels.optout import OptOutStore
from channels.redis_client import text_redis
from channels.sms.channel import SmsChannel
from channels.sms.config import SmsConfig
from channels.sms.outbox import Outbox, migrate_legacy_keys
from channels.sms.providers import sender_from_config
from channels.sms.quiet_hours import QuietHours
from channels.sms.ratelimit import RateLimiter
from channels.sms.templates import SmsRenderer, TemplateBook
from channels.sms.webhooks import SmsWebhooks

log = logging.getLogger(__name__)

PATHS = {
    "/sms/aliyun/up": "aliyun_up",
    "/sms/aliyun/report": "aliyun_report",
    "/sms/tencent/up": "tencent_up",
    "/sms/tencent/report": "tencent_report",
}


class SmsRuntime:
    """The channel inside one gateway app: webhooks, conversation logic, outbox and worker."""

    def __init__(self, config: SmsConfig, trusted_proxies: tuple[Network, ...] = ()) -> None:
        self.config = config
        self.trusted_proxies = trusted_proxies
        # Built when the app starts (they need its Redis client and router); None before.
        self.channel: SmsChannel | None = None
        self.webhooks: SmsWebhooks | None = None
        self.outbox: Outbox | None = None
        self.dispatcher: Dispatcher | None = None

    def handler(self, name: str):
        async def handle(request: web.Request) -> web.Response:
            if self.webhooks is None:
                return web.Response(status=503, text="sms channel disabled")
            return await getattr(self.webhooks, name)(request)
        return handle

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: build everything on start, stop the worker on shutdown."""
        cfg = self.config
        book = cfg.templates or TemplateBook.load(cfg.templates_file)
        unmapped = [kind for kind in ("generic_reply", "fallback", "optout_confirm",
                                      "optin_confirm") if book.get(kind, cfg.provider) is None]
        if unmapped:
            log.warning("sms: no %s template id in %s for %s: those SMS cannot be sent until "
                        "their approved ids are filled in", ", ".join(unmapped),
                        cfg.templates_file, cfg.provider)
        redis, own_redis = text_redis(app[REDIS_KEY], app.get(CONFIG_KEY))
        sender = sender_from_config(cfg)
        self.outbox = outbox = Outbox(
            redis, sender, QuietHours(cfg.quiet_hours, cfg.timezone),
            RateLimiter(redis, {"proactive": cfg.proactive_limits, "reply": cfg.reply_limits}),
            OptOutStore(redis), max_attempts=cfg.max_attempts,
            reconcile_grace_seconds=cfg.reconcile_grace_seconds)
        renderer = SmsRenderer(book, cfg.provider, cfg.sign_name, cfg.max_parts)
        self.channel = channel = SmsChannel(cfg, redis, app[ROUTER_KEY], outbox, renderer,
                                            deliver_via(app))
        self.dispatcher = dispatcher = Dispatcher(
            redis, channel.handle_job, namespace=cfg.dispatch_namespace,
            on_interrupted=channel.handle_interrupted, job_timeout_seconds=cfg.job_timeout_seconds)
        await dispatcher.start()
        await migrate_at_start("sms outbox", migrate_legacy_keys(redis))  # before the worker
        self.webhooks = SmsWebhooks(cfg, redis, outbox, dispatcher, self.trusted_proxies)
        worker = asyncio.create_task(outbox.run_forever(cfg.poll_interval_seconds))
        if not cfg.callback_token:
            log.warning("sms: SMS_CALLBACK_TOKEN is not set; every provider callback is refused")
        log.info("sms channel enabled: %s, sign 【%s】, templates %s", cfg.provider, cfg.sign_name,
                 cfg.templates_file)
        try:
            yield
        finally:
            self.webhooks = None
            await dispatcher.stop()  # turns in progress may finish (grace ≥ the job timeout)
            outbox.stop()
            try:  # a message cut off mid-send is sent again after its lease: let it finish
                await asyncio.wait_for(worker, cfg.send_timeout_seconds + 5)
            except asyncio.TimeoutError:
                log.warning("sms outbox worker did not stop in time; the message it held goes "
                            "out again after its lease")
            await sender.close()
            if own_redis:
                await redis.aclose()


__all__ = ["SMS_RUNTIME", "SmsRuntime", "setup"]


def setup(app: web.Application, sms_config: SmsConfig,
          trusted_proxies: tuple[Network, ...] = ()) -> SmsRuntime:
    """Register the SMS callbacks on ``app`` with the channel's settings (the GatewayConfig's
    ``sms``, read and validated at start by :mod:`channels.config`); ``trusted_proxies``
    (GATEWAY_TRUSTED_PROXIES) decide whose X-Forwarded-For the callback allowlist believes."""
    runtime = SmsRuntime(sms_config, trusted_proxies)
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
