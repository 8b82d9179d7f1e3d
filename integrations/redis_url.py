"""One REDIS_URL for a single server, TLS, Redis Sentinel or Redis Cluster (this package is
imported by both Python environments; redis-py 4.6 in Rasa's, 8.x in the app's).

    redis://[[user]:password@]host[:port][/db]        one server (port 6379, db 0 by default)
    rediss://...                                       the same over TLS; redis-py's query options
                                                       apply (ssl_ca_certs, ssl_cert_reqs, ...)
    unix:///path/to/redis.sock[?db=N]                  a Unix socket
    redis+sentinel://[[user]:password@]host1[:port1],host2[:port2]/<service>[/db]
    rediss+sentinel://...                              Sentinel (port 26379 by default); the
                                                       password is the master's; the sentinels'
                                                       own password: ?sentinel_password=...
    redis+cluster://[[user]:password@]host1[:port1],host2[:port2]
    rediss+cluster://...                               Redis Cluster from any of its nodes (db 0)

Keys that a Lua script or a MULTI touches together must share a hash tag (``{...}``) on a
Cluster.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class RedisTarget:
    """What a REDIS_URL names: ``kind`` is ``single``, ``sentinel`` or ``cluster``."""

    kind: str
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for part in netloc.rpartition("@")[2].split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [ipv6]:port
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = part.partition(":")
        try:
            hosts.append((host, int(port) if port else default_port))
        except ValueError:
            raise ValueError(f"REDIS_URL has a bad port in {part!r}") from None
    if not hosts:
        raise ValueError("REDIS_URL names no host")
    return tuple(hosts)


def parse_redis_url(url: str) -> RedisTarget:
    """Parses ``url``; raises ``ValueError`` with one clear line when it is not one of the forms
    above. The password never appears in the message."""
    url = (url or "").strip()
    scheme = url.partition("://")[0].lower()
    if scheme in SINGLE_SCHEMES:
        return RedisTarget("single", url, tls=scheme == "rediss")
    if scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        known = ", ".join(SINGLE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES)
        raise ValueError(f"REDIS_URL must start with one of {known}://, got {scheme or 'nothing'}")
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    segments = [s for s in parts.path.split("/") if s]
    common = dict(username=unquote(user) or None, password=unquote(password) or None,
                  tls=scheme.startswith("rediss"), options=options)
    if scheme in CLUSTER_SCHEMES:
        if segments not in ([], ["0"]):
            raise ValueError("REDIS_URL: a Redis Cluster has only db 0")
        return RedisTarget("cluster", url, hosts=_hosts(parts.netloc, 6379), **common)
    if not segments:
        raise ValueError("REDIS_URL: a Sentinel URL names its service: redis+sentinel://host:26379/<service>")
    try:
        db = int(segments[1]) if len(segments) > 1 else 0
    except ValueError:
        raise ValueError(f"REDIS_URL: bad db {segments[1]!r}") from None
    return RedisTarget("sentinel", url, hosts=_hosts(parts.netloc, 26379), service=unquote(segments[0]),
                       db=db, **common)


def _connection_options(target: RedisTarget) -> dict[str, Any]:
    tls = dict(ssl=True, ssl_ca_certs=target.options.get("ssl_ca_certs"),
               ssl_cert_reqs=target.options.get("ssl_cert_reqs", "required")) if target.tls else {}
    return dict(username=target.username, password=target.password, **tls)


def sync_client(url: str, **kwargs: Any):
    """A blocking redis-py client for ``url`` (``decode_responses`` and timeouts via ``kwargs``):
    ``Redis``, a Sentinel-managed master, or ``RedisCluster``."""
    import redis
    from redis.sentinel import Sentinel

    target = parse_redis_url(url)
    if target.kind == "single":
        return redis.Redis.from_url(target.url, **kwargs)
    options = _connection_options(target)
    if target.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.hosts], **options, **kwargs)
    return Sentinel(list(target.hosts), sentinel_kwargs=_sentinel_options(target), **kwargs).master_for(
        target.service, db=target.db, **options)


def async_client(url: str, **kwargs: Any):
    """A ``redis.asyncio`` client for ``url``, the same three kinds as :func:`sync_client`.
    ``kwargs`` are connection options (``decode_responses``, timeouts, ``max_connections``:
    per node on a Cluster, of the pool otherwise)."""
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel

    target = parse_redis_url(url)
    if target.kind == "single":
        return Redis.from_url(target.url, **kwargs)
    options = _connection_options(target)
    if target.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.hosts], **options, **kwargs)
    return Sentinel(list(target.hosts), sentinel_kwargs=_sentinel_options(target), **kwargs).master_for(
        target.service, db=target.db, **options)


def _sentinel_options(target: RedisTarget) -> dict[str, Any]:
    """How to reach the sentinels themselves: TLS as the master, their own password."""
    options = {k: v for k, v in _connection_options(target).items() if k.startswith("ssl")}
    if target.options.get("sentinel_password"):
        options["password"] = target.options["sentinel_password"]
    return options
