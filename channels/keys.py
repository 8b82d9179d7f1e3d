"""The typed keys of the gateway app's shared objects, in one small module.

:mod:`channels.app` sets them and the channels and :mod:`channels.delivery` read them, so no
channel imports :mod:`channels.app` (which imports every channel). The classes of the config,
the deliverer and the channel runtimes are named for type checkers only: their modules import
this one (:mod:`channels.config` loads the channels' configuration modules, whose packages read
these keys), so importing them here would be an import cycle.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis

from channels.rasa_client import RasaClient
from channels.router import ConversationRouter

if TYPE_CHECKING:
    from channels.config import GatewayConfig
    from channels.console.api import Console
    from channels.delivery import Deliverer
    from channels.handoff.service import HandoffService
    from channels.sms import SmsRuntime
    from channels.webchat import WebChat
    from channels.wechat import WeChatChannel

CONFIG_KEY: web.AppKey[GatewayConfig] = web.AppKey("gateway_config")
REDIS_KEY = web.AppKey("gateway_redis", Redis)
RASA_KEY = web.AppKey("gateway_rasa", RasaClient)
ROUTER_KEY = web.AppKey("gateway_router", ConversationRouter)
DELIVERER_KEY: web.AppKey[Deliverer] = web.AppKey("deliverer")
WEBCHAT_KEY: web.AppKey[WebChat] = web.AppKey("webchat")
WECHAT_CHANNEL: web.AppKey[WeChatChannel] = web.AppKey("wechat_channel")
SMS_RUNTIME: web.AppKey[SmsRuntime] = web.AppKey("sms_runtime")
GATEWAY_APP_KEY = web.AppKey("gateway_app", web.Application)  # on the admin app
HANDOFF_KEY: web.AppKey[HandoffService] = web.AppKey("handoff")
CONSOLE_KEY: web.AppKey[Console] = web.AppKey("console")
