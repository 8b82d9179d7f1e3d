"""The gateway's aiohttp application factories: the customer-facing app and its admin app.

The customer port serves the channels only; ``/healthz`` and ``/metrics`` live on the admin app,
which shares the gateway app's Redis and Rasa clients and is served on its own address
(``GATEWAY_ADMIN_HOST``/``GATEWAY_ADMIN_PORT``, loopback by default).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels import sms, webchat, wechat
from channels.broadcast.report import campaign_view, campaigns_view
from channels.config import ConfigError, GatewayConfig
from channels.console import api as console_api
from channels.delivery import Deliverer
from channels.handoff import wiring as handoff
from channels.keys import (CONFIG_KEY, DELIVERER_KEY, GATEWAY_APP_KEY, RASA_KEY, REDIS_KEY,
                           ROUTER_KEY, SMS_RUNTIME, WEBCHAT_KEY, WECHAT_CHANNEL)
from channels.log_filters import install_client_error_filters
from channels.messages import ChannelAdapter
from channels.options import OptionMemory
from channels.optout import OptOutStore
from channels.outbound_requests import OutboundRequests
from channels.quiet_hours import QuietHours
from channels.rasa_client import RasaClient
from channels.rasa_nodes import RasaPool
from channels.redis_client import gateway_redis, text_redis
from channels.router import ConversationRouter
from channels.sms.adapter import SmsAdapter
from channels.sms.outbox import Outbox
from channels.sms.providers import sender_from_config
from channels.sms.ratelimit import RateLimiter
from channels.sms.templates import SmsRenderer, TemplateBook
from channels.webchat_outbox import WebChatAdapter
from channels.wechat.adapter import WeChatAdapter
from channels.wechat.api import WeChatApi

__all__ = ["CONFIG_KEY", "RASA_KEY", "REDIS_KEY", "ROUTER_KEY", "create_admin_app", "create_app",
           "gateway_redis", "new_deliverer", "serve_admin", "standalone_deliverer"]

log = logging.getLogger(__name__)

# Requests other than socket.io carry small JSON/XML bodies; socket.io has its own limit.
MAX_BODY_BYTES = 1024 * 1024


async def _redis_context(app: web.Application) -> AsyncIterator[None]:
    redis = gateway_redis(app[CONFIG_KEY])
    app[REDIS_KEY] = redis
    try:
        yield
    finally:
        await redis.aclose()


async def _router_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    rasa: RasaClient | RasaPool
    if len(config.rasa_urls) > 1:
        rasa = RasaPool(config.rasa_urls, config.rasa_timeout_seconds,
                        config.rasa_connect_timeout_seconds, config.rasa_max_connections,
                        health_interval_seconds=config.rasa_health_interval_seconds,
                        health_fall=config.rasa_health_fall, health_rise=config.rasa_health_rise,
                        lock_lifetime_seconds=config.rasa_lock_lifetime_seconds)
    else:
        rasa = RasaClient(config.rasa_url, config.rasa_timeout_seconds,
                          config.rasa_connect_timeout_seconds, config.rasa_max_connections)
    await rasa.start()
    app[RASA_KEY] = rasa  # type: ignore[assignment]  # a pool has the client's interface
    router = ConversationRouter(
        rasa, app[REDIS_KEY], max_message_chars=config.max_message_chars,
        lock_wait_seconds=config.lock_wait_seconds, lock_ttl_seconds=config.lock_ttl_seconds)
    app[ROUTER_KEY] = router
    log.info("gateway routing to Rasa at %s", ", ".join(config.rasa_urls))
    try:
        yield
    finally:
        await router.close()
        await rasa.close()


async def _redis_ok(redis: Redis) -> tuple[bool, str]:
    try:
        await asyncio.wait_for(redis.ping(), 2)
        return True, "ok"
    except asyncio.TimeoutError:
        return False, "timeout"
    except (RedisError, OSError) as exc:
        return False, type(exc).__name__


async def healthz(request: web.Request) -> web.Response:
    """``{"status", "redis": {ok, detail}, "rasa": {ok, detail}}``; 200 when both are up, else 503.

    A healthy Rasa is reported as ``ok``, not with the version banner it answers. With a pool of
    Rasa nodes, ``rasa.ok`` means at least one node answers, ``rasa.detail`` says how many do
    (``"1/2 nodes up"``) and ``rasa.nodes`` lists each node's state in the rotation."""
    gateway = request.app[GATEWAY_APP_KEY]
    (redis_ok, redis_detail), (rasa_ok, rasa_detail) = await asyncio.gather(
        _redis_ok(gateway[REDIS_KEY]), gateway[RASA_KEY].ping())
    rasa = gateway[RASA_KEY]
    if rasa_ok and not isinstance(rasa, RasaPool):
        rasa_detail = "ok"
    ok = redis_ok and rasa_ok
    body: dict[str, Any] = {"status": "ok" if ok else "degraded",
                            "redis": {"ok": redis_ok, "detail": redis_detail},
                            "rasa": {"ok": rasa_ok, "detail": rasa_detail}}
    if isinstance(rasa, RasaPool):
        body["rasa"]["nodes"] = rasa.status()
    return web.json_response(body, status=200 if ok else 503)


async def metrics_view(_request: web.Request) -> web.Response:
    """Prometheus text exposition of the process's metrics."""
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


@web.middleware
async def refuse_undecodable_bodies(request: web.Request, handler) -> web.StreamResponse:
    """Bodies are taken as sent: no caller of ours (WeChat, the SMS providers, socket.io)
    compresses them, and aiohttp never answers some bodies that do not decode as their declared
    ``Content-Encoding`` (a 75 KB non-deflate body sent as ``deflate`` hung the request): 415
    before anything reads it, and the connection closed so the rest is never parsed. A body that
    fails to decode anyway is the client's error: 400 and a log line, not a 500."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if encoding not in ("", "identity"):
        log.warning("%s %s refused: Content-Encoding %.40r", request.method, request.path, encoding)
        response = web.Response(status=415, text="unsupported content encoding")
        response.force_close()
        return response
    try:
        return await handler(request)
    except RequestPayloadError as exc:
        log.warning("%s %s refused: body does not decode (%s)", request.method, request.path, exc)
        return web.Response(status=400, text="bad request")


def create_app(config: GatewayConfig) -> web.Application:
    """Build the customer-facing gateway: Redis client, Rasa client and router (cleanup
    contexts) and every channel's routes (web chat, WeChat, SMS). Health and metrics are on
    :func:`create_admin_app`."""
    if not config.redis_url:
        raise ConfigError("REDIS_URL is required by create_app (python -m channels starts an "
                          "embedded Redis when it is unset)")
    install_client_error_filters()  # a client's garbage logs one line, not a traceback
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[refuse_undecodable_bodies])
    app[CONFIG_KEY] = config
    # Order matters: channels' own cleanup contexts (appended by setup) use the Redis client
    # and the router, so these two come first.
    app.cleanup_ctx.append(_redis_context)
    app.cleanup_ctx.append(_router_context)
    webchat.setup(app, config)
    wechat.setup(app, config.wechat)
    sms.setup(app, config.sms, config.trusted_proxies)
    setup_delivery(app, config)  # after the channels: the outbound path (channels.delivery)
    handoff.setup(app, config.handoff, config.timezone)  # after delivery: agents' messages use it
    console_api.setup(app, config)  # the agent console under /console/ (its JSON API: /console/api/)
    return app


def setup_delivery(app: web.Application, config: GatewayConfig) -> None:
    """Give ``app`` its :class:`Deliverer` (``app[DELIVERER_KEY]``) once it starts: the opt-out
    store (the legacy stores migrated into it before any notice goes), quiet hours and rate
    limits from ``config`` (GatewayConfig), the adapters of the web chat and of the WeChat and
    SMS channels when they are enabled, the scheduled-delivery worker and the consumer of the
    outbound requests stream. Call after every channel's ``setup``."""

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        redis = app[REDIS_KEY]
        deliverer = new_deliverer(config, redis)
        optouts = deliverer.optouts
        webchat = app.get(WEBCHAT_KEY)  # its sockets: the web adapter's fast path
        deliverer.register(WebChatAdapter(redis, config.webchat_outbox_ttl_seconds,
                                          local=webchat.outbox if webchat else None))
        for adapter in _running_channel_adapters(app):
            deliverer.register(adapter)
        app[DELIVERER_KEY] = deliverer  # set first: the channels' workers already answer
        try:  # before the first notice: the legacy stores' opt-outs must hold
            await optouts.migrate()
        except (RedisError, OSError) as exc:  # the legacy entries move at the next start
            log.warning("opt-out: migrating the legacy stores failed (%s); starting anyway",
                        type(exc).__name__)
        consumer = OutboundRequests(redis, deliverer, consumer=f"{os.uname().nodename}-"
                                                              f"{os.getpid()}-{uuid.uuid4().hex[:6]}")
        tasks = [asyncio.create_task(deliverer.run_forever()),
                 asyncio.create_task(consumer.run_forever())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await consumer.leave()

    app.cleanup_ctx.append(lifespan)


def new_deliverer(config: GatewayConfig, redis: Redis) -> Deliverer:
    """A :class:`Deliverer` with ``config``'s opt-out store, quiet hours and rate limits and no
    adapter yet (the gateway's and :func:`standalone_deliverer`'s)."""
    return Deliverer(redis, OptOutStore(redis),
                     QuietHours(config.delivery_quiet_hours, config.timezone),
                     config.delivery_rate_limits,
                     notice_context_seconds=config.notice_context_hours * 3600)


@contextlib.asynccontextmanager
async def standalone_deliverer(config: GatewayConfig, redis: Redis) -> AsyncIterator[Deliverer]:
    """A :class:`Deliverer` for a process outside the gateway (the broadcast workers), with the
    adapters of the configured channels: the web chat outbox, the WeChat API (when WECHAT_TOKEN
    is set) and the SMS outbox (when SMS is configured). Only the transports run here: the
    gateways' workers drain what waits (web outbox wake-ups, SMS held in the outbox, scheduled
    deliveries)."""
    deliverer = new_deliverer(config, redis)
    deliverer.register(WebChatAdapter(redis, config.webchat_outbox_ttl_seconds))
    async with contextlib.AsyncExitStack() as stack:
        if config.wechat.enabled:
            cfg = config.wechat
            api = WeChatApi(cfg.api_base_url, cfg.app_id, cfg.app_secret, redis,
                            timeout_seconds=cfg.api_timeout_seconds)
            stack.push_async_callback(api.close)
            deliverer.register(WeChatAdapter(cfg, redis, api))
        if config.sms.enabled:
            deliverer.register(await stack.enter_async_context(_sms_adapter(config, redis)))
        yield deliverer


@contextlib.asynccontextmanager
async def _sms_adapter(config: GatewayConfig, redis: Redis) -> AsyncIterator[ChannelAdapter]:
    """The SMS channel's adapter on its own outbox (built as the channel builds it)."""
    cfg = config.sms
    book = cfg.templates or TemplateBook.load(cfg.templates_file)
    text_client, own_redis = text_redis(redis, config)
    sender = sender_from_config(cfg)
    outbox = Outbox(text_client, sender, QuietHours(cfg.quiet_hours, cfg.timezone),
                    RateLimiter(text_client, {"proactive": cfg.proactive_limits,
                                              "reply": cfg.reply_limits}),
                    OptOutStore(text_client), max_attempts=cfg.max_attempts,
                    reconcile_grace_seconds=cfg.reconcile_grace_seconds)
    renderer = SmsRenderer(book, cfg.provider, cfg.sign_name, cfg.max_parts)
    try:
        yield SmsAdapter(outbox, renderer, OptionMemory(text_client, cfg.options_ttl_seconds))
    finally:
        await sender.close()
        if own_redis:
            await text_client.aclose()


def _running_channel_adapters(app: web.Application) -> list[ChannelAdapter]:
    """The adapters of the WeChat and SMS channels that are enabled and started (their cleanup
    contexts run before this one's)."""
    wechat, sms = app.get(WECHAT_CHANNEL), app.get(SMS_RUNTIME)
    adapters = []
    if wechat is not None and wechat.responder is not None:
        adapters.append(wechat.responder.adapter)
    if sms is not None and sms.channel is not None:
        adapters.append(sms.channel.adapter)
    return adapters


def create_admin_app(gateway: web.Application) -> web.Application:
    """The operators' app: ``/healthz``, ``/metrics`` and the broadcast campaigns' reports
    (``/admin/campaigns``, ``/admin/campaigns/<id>``), using ``gateway``'s Redis and Rasa
    clients (so it answers once ``gateway`` has started)."""
    admin = web.Application(client_max_size=MAX_BODY_BYTES)
    admin[GATEWAY_APP_KEY] = gateway
    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/metrics", metrics_view)
    admin.router.add_get("/admin/campaigns", campaigns_view)
    admin.router.add_get("/admin/campaigns/{campaign_id}", campaign_view)
    return admin


def serve_admin(admin: web.Application, host: str, port: int):
    """A cleanup context for the gateway app that serves ``admin`` on ``host:port`` while the
    gateway runs (one process, two listening sites)."""

    async def admin_site(_gateway: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(admin, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            log.info("admin endpoints (/healthz, /metrics) on %s:%s", host, port)
            yield
        finally:
            await runner.cleanup()

    return admin_site
