"""The gateway's Redis clients (channels/redis_client.py) on one server and on a real Redis Cluster:
the client of every part of the gateway, and its twin that answers ``str`` (the SMS channel's)."""
from __future__ import annotations

import uuid

import pytest
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import RedisCluster

from channels.config import ConfigError, GatewayConfig
from channels.redis_client import gateway_redis, text_redis


async def roundtrip(config: GatewayConfig) -> tuple[object, object, bytes, str]:
    redis = gateway_redis(config)
    text, created = text_redis(redis, config)
    key = f"pdtest:client:{uuid.uuid4().hex}"
    try:
        assert created is True
        await redis.set(key, "电费", ex=60)
        return redis, text, await redis.get(key), await text.get(key)
    finally:
        await text.aclose()
        await redis.aclose()


async def test_one_server_a_blocking_pool_and_a_decoding_twin(redis_url):
    config = GatewayConfig.from_env({"REDIS_URL": redis_url, "REDIS_MAX_CONNECTIONS": "7"})
    redis, _, raw, text = await roundtrip(config)
    assert isinstance(redis.connection_pool, BlockingConnectionPool)
    assert redis.connection_pool.max_connections == 7
    assert (raw, text) == ("电费".encode(), "电费")


async def test_a_cluster_from_its_url_and_a_decoding_twin(redis_cluster_url):
    config = GatewayConfig.from_env({"REDIS_URL": redis_cluster_url, "REDIS_SOCKET_TIMEOUT_SECONDS": "3"})
    redis, twin, raw, text = await roundtrip(config)
    assert isinstance(redis, RedisCluster) and isinstance(twin, RedisCluster)
    assert redis.connection_kwargs["socket_timeout"] == 3
    assert (raw, text) == ("电费".encode(), "电费")


def test_a_bad_redis_url_stops_the_gateway_with_one_line():
    for url in ("redis+cluster://", "redis+sentinel://h:26379", "http://h:6379"):
        with pytest.raises(ConfigError, match="REDIS_URL"):
            GatewayConfig.from_env({"REDIS_URL": url})
