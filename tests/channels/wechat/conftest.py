"""Fixtures: the WeChat API fake, the Rasa REST contract fake, and gateway apps on loopback."""
from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from fakes.rasa_rest import FakeRasaRest
from fakes.wechat_api import FakeWeChatApi, WeChatPusher

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
NEW_AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"


@pytest.fixture
async def wechat_api() -> AsyncIterator[FakeWeChatApi]:
    fake = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def rasa() -> AsyncIterator[FakeRasaRest]:
    fake = FakeRasaRest(jitter_seconds=0.02)
    await fake.start()
    yield fake
    await fake.close()


@dataclass
class Gateways:
    """Gateway apps sharing one Redis, plus what a test needs to talk to them."""

    urls: list[str]
    env: dict[str, str]
    wechat_api: FakeWeChatApi
    rasa: FakeRasaRest
    session: aiohttp.ClientSession
    servers: list[TestServer] = field(default_factory=list)
    apps: list[Any] = field(default_factory=list)

    def pusher(self, index: int = 0, mode: str | None = None, aes_key: str | None = None) -> WeChatPusher:
        return WeChatPusher(self.urls[index], self.env["WECHAT_TOKEN"], self.env["WECHAT_APP_ID"],
                            aes_key or self.env.get("WECHAT_AES_KEY", ""),
                            mode or self.env.get("WECHAT_ENCRYPT_MODE", "plain"))


def gateway_env(redis_url: str, rasa_url: str, api: FakeWeChatApi, **overrides: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url, "RASA_URL": rasa_url,
        "WECHAT_TOKEN": "tok" + secrets.token_hex(6), "WECHAT_APP_ID": api.app_id,
        "WECHAT_APP_SECRET": api.app_secret, "WECHAT_AES_KEY": AES_KEY, "WECHAT_ENCRYPT_MODE": "safe",
        "WECHAT_API_BASE_URL": api.base_url,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


async def start_gateways(env: dict[str, str], count: int, monkeypatch) -> tuple[list[TestServer], list[Any]]:
    """``count`` gateway apps built by the product's own factory from ``env``."""
    from channels.app import create_app
    from channels.config import GatewayConfig

    for key in [k for k in os.environ if k.startswith("WECHAT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    servers, apps = [], []
    for _ in range(count):
        app = create_app(GatewayConfig.from_env())
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        apps.append(app)
    return servers, apps


@pytest.fixture
async def make_gateways(redis_url, wechat_api, rasa, monkeypatch):
    """``await make_gateways(count=2, **env_overrides)`` → Gateways (stopped at teardown)."""
    created: list[Gateways] = []
    rasa_url = rasa.url

    async def make(count: int = 1, **overrides: str) -> Gateways:
        env = gateway_env(redis_url, rasa_url, wechat_api, **overrides)
        servers, apps = await start_gateways(env, count, monkeypatch)
        session = aiohttp.ClientSession()
        gw = Gateways([str(s.make_url("")).rstrip("/") for s in servers], env, wechat_api, rasa, session,
                      servers, apps)
        created.append(gw)
        return gw

    yield make
    for gw in created:
        await gw.session.close()
        for server in gw.servers:
            await server.close()
