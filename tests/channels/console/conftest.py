"""Fixtures of the console tests: a private Redis (the hand-off keys and the console's users are
global keys), flushed before each test; gateway apps built by ``create_app`` served on loopback;
users created with cheap argon2 parameters (the hash carries its parameters, so logging in
verifies them as cheaply); HTTP clients whose cookie jar accepts 127.0.0.1's cookies."""
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher
from redis.asyncio import Redis

from channels.console.auth import UserStore
from channels.embedded_redis import EmbeddedRedis
from channels.handoff.store import HandoffStore

PASSWORD = "correct-horse-42"
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="session")
def console_redis_url(tmp_path_factory) -> str:
    server = EmbeddedRedis(tmp_path_factory.mktemp("console-redis"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
async def credis(console_redis_url) -> AsyncIterator[Redis]:
    client = Redis.from_url(console_redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def store(credis) -> HandoffStore:
    return HandoffStore(credis)


@pytest.fixture
async def users(credis) -> UserStore:
    """Three users: ``wang`` (agent, general), ``li`` (agent, vip), ``boss`` (supervisor)."""
    store = UserStore(credis, hasher=CHEAP_HASHER)
    await store.add("wang", "agent", ("general",), PASSWORD, "王工")
    await store.add("li", "agent", ("vip",), PASSWORD, "李工")
    await store.add("boss", "supervisor", (), PASSWORD, "主管")
    return store


@dataclass
class Gateway:
    url: str
    app: Any
    server: TestServer


class Agent:
    """A logged-in (or not yet) console client of one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.http = ClientSession(cookie_jar=CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, name: str, password: str = PASSWORD) -> Any:
        response = await self.http.post(self.gateway.url + "/console/login",
                                        json={"username": name, "password": password})
        body = await response.json()
        if response.status == 200:
            self.csrf = body["csrf_token"]
        return response

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.gateway.url + path) as response:
            return response.status, await response.json()

    async def post(self, path: str, body: Any = None, csrf: str | None = None) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf if csrf is None else csrf} if (csrf or self.csrf) else {}
        async with self.http.post(self.gateway.url + path, json=body, headers=headers) as response:
            return response.status, await response.json()

    async def live(self, origin: str | None = None):
        return await self.http.ws_connect(self.gateway.url + "/console/api/live",
                                          origin=origin or self.gateway.url)


@pytest.fixture
async def make_gateway(console_redis_url, rasa_fake, credis, monkeypatch):
    """``await make_gateway(CONSOLE_LOGIN_ATTEMPTS="3", ...)`` → a gateway app on loopback, on the
    console tests' Redis."""
    from channels.app import create_app
    from channels.config import GatewayConfig

    for key in [k for k in os.environ if k.startswith(("WECHAT_", "SMS_", "GATEWAY_", "RASA_", "CONSOLE_"))]:
        monkeypatch.delenv(key)
    servers: list[TestServer] = []

    async def make(**env: str) -> Gateway:
        values = {"REDIS_URL": console_redis_url, "RASA_URL": rasa_fake.url, **env}
        app = create_app(GatewayConfig.from_env(values))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Gateway(str(server.make_url("")).rstrip("/"), app, server)

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def gateway(make_gateway) -> Gateway:
    return await make_gateway()


@pytest.fixture
async def make_agent() -> AsyncIterator:
    agents: list[Agent] = []

    def make(gateway: Gateway) -> Agent:
        agent = Agent(gateway)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.http.close()


async def hand_off(store: HandoffStore, cid: str, queue: str, account: str = "3201234567",
                   reason: str = "request_human") -> dict:
    """A waiting hand-off, as the router opens one."""
    channel = cid.partition(":")[0]
    return await store.request(cid, queue=queue, reason=reason, channel=channel,
                               customer_type="residential", account=account)
