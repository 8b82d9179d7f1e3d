"""Fixtures of the gateway-core tests: a Rasa REST contract fake and gateways on loopback.

Fixture names are specific (``rasa_fake``, ``make_web_gateway``) so the WeChat and SMS test
folders below keep their own ``rasa`` / ``make_gateway`` fixtures. ``redis`` is a plain client
of the session's Redis; the SMS and WeChat dispatcher tests override it with the client shape
their code uses (decoded strings, a blocking pool).
"""
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from fakes.rasa_rest import FakeRasaRest
# The delivery tests' fixtures (a pinned clock, a recording channel, delivery facades).
from tests.channels.delivery_support import clock, make_deliverer, recording  # noqa: F401


@pytest.fixture
async def redis(redis_url) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def rasa_fake() -> AsyncIterator[FakeRasaRest]:
    fake = FakeRasaRest()
    await fake.start()
    yield fake
    await fake.close()


@dataclass
class WebGateway:
    """One gateway app (built by create_app) served on loopback, and its admin app
    (``/healthz``, ``/metrics``) on a port of its own."""

    url: str
    app: Any
    server: TestServer
    admin_url: str
    admin_server: TestServer
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
async def make_web_gateway(redis_url, rasa_fake, monkeypatch):
    """``await make_web_gateway(RASA_URL=..., GATEWAY_MAX_MESSAGE_CHARS=...)`` → WebGateway."""
    from channels.app import create_admin_app, create_app
    from channels.config import GatewayConfig

    created: list[WebGateway] = []
    for key in [k for k in os.environ if k.startswith(("WECHAT_", "SMS_", "GATEWAY_", "RASA_"))]:
        monkeypatch.delenv(key)

    async def make(**env: str) -> WebGateway:
        values = {"REDIS_URL": redis_url, "RASA_URL": rasa_fake.url, **env}
        config = GatewayConfig.from_env(values)
        app = create_app(config)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        admin_server = TestServer(create_admin_app(app), host="127.0.0.1")
        await admin_server.start_server()
        gateway = WebGateway(str(server.make_url("")).rstrip("/"), app, server,
                             str(admin_server.make_url("")).rstrip("/"), admin_server)
        created.append(gateway)
        return gateway

    yield make
    for gateway in created:
        await gateway.admin_server.close()
        await gateway.server.close()
