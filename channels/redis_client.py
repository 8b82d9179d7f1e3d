"""The gateway's Redis clients, for every REDIS_URL form of integrations/redis_url.py: one server
(redis://, rediss://, unix://), Redis Sentinel or Redis Cluster."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

from integrations.redis_url import async_client, parse_redis_url

if TYPE_CHECKING:  # channels.config imports the channels, which import this module
    from channels.config import GatewayConfig


def gateway_redis(config: GatewayConfig, **options: Any) -> Redis:
    """The gateway's Redis client, with a socket timeout (a hung Redis fails a command after
    ``redis_socket_timeout_seconds`` instead of stalling acknowledgements and turn locks).
    One server: a blocking pool (under a burst, callers wait briefly for a connection instead of
    failing). Sentinel: the master's pool; Cluster: a pool per node, each of
    ``redis_max_connections``. ``options``: more connection options (``decode_responses``)."""
    assert config.redis_url, "the gateway's REDIS_URL is set (or the embedded Redis started)"
    options = dict(socket_connect_timeout=2, socket_timeout=config.redis_socket_timeout_seconds,
                   health_check_interval=30, **options)
    if parse_redis_url(config.redis_url).kind != "single":
        return async_client(config.redis_url, max_connections=config.redis_max_connections, **options)
    pool = BlockingConnectionPool.from_url(
        config.redis_url, max_connections=config.redis_max_connections, timeout=5, **options)
    return Redis.from_pool(pool)  # the client owns the pool and closes it


def text_redis(redis: Redis, config: GatewayConfig | None) -> tuple[Redis, bool]:
    """A client on the gateway's Redis that answers ``str``: ``redis`` itself when it does,
    else a new one (for ``config``'s REDIS_URL when ``redis`` is not a plain one-server client);
    (client, created here)."""
    if redis.get_encoder().decode_responses:
        return redis, False
    pool = getattr(redis, "connection_pool", None)
    if type(pool) in (ConnectionPool, BlockingConnectionPool):
        kwargs = dict(pool.connection_kwargs, decode_responses=True)
        return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs)), True
    if config is None or not config.redis_url:
        raise ValueError("a Sentinel or Cluster client needs the gateway's REDIS_URL to decode answers")
    return gateway_redis(config, decode_responses=True), True
