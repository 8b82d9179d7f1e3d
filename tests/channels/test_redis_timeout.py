"""A Redis that accepts connections and never answers stalls nothing for longer than
REDIS_SOCKET_TIMEOUT_SECONDS (a loopback server that holds every connection silent)."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from channels.app import gateway_redis
from channels.config import ConfigError, GatewayConfig
from channels.messages import Message, Reply
from channels.rasa_client import RasaClient
from channels.router import ConversationRouter
from tests.support.hung_server import hung_server


def test_socket_timeout_default_and_bounds():
    assert GatewayConfig.from_env({}).redis_socket_timeout_seconds == 5.0
    assert GatewayConfig.from_env({"REDIS_SOCKET_TIMEOUT_SECONDS": "2.5"}).redis_socket_timeout_seconds == 2.5
    for bad in ("1", "0", "-3", "nan", "inf", "五", "1000"):
        with pytest.raises(ConfigError, match="REDIS_SOCKET_TIMEOUT_SECONDS"):
            GatewayConfig.from_env({"REDIS_SOCKET_TIMEOUT_SECONDS": bad})


async def test_router_answers_after_the_timeout_when_redis_hangs(rasa_fake, caplog):
    with hung_server() as port:
        config = GatewayConfig.from_env({"REDIS_URL": f"redis://127.0.0.1:{port}/0",
                                         "RASA_URL": rasa_fake.url,
                                         "REDIS_SOCKET_TIMEOUT_SECONDS": "2"})
        redis = gateway_redis(config)
        rasa = RasaClient(rasa_fake.url, 5.0, connect_timeout_seconds=1.0)
        await rasa.start()
        router = ConversationRouter(rasa, redis, lock_wait_seconds=config.lock_wait_seconds,
                                    lock_ttl_seconds=config.lock_ttl_seconds)
        try:
            started = time.monotonic()
            with caplog.at_level(logging.ERROR, logger="channels.router"):
                # Without a socket timeout the turn lock waits for Redis forever.
                replies = await asyncio.wait_for(
                    router.handle(Message("web", "u-hung-redis", "你好")), 15)
            elapsed = time.monotonic() - started
        finally:
            await router.close()
            await rasa.close()
            await redis.aclose()
    assert replies == [Reply("收到：你好")]
    assert 1.9 <= elapsed < 6, elapsed
    assert "conversation lock unavailable (TimeoutError)" in caplog.text
