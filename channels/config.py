"""The gateway's configuration, read from the environment in one place and validated at start."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from channels.client_address import Network, parse_networks
from channels.config_error import ConfigError
from channels.console.config import ConsoleConfig
from channels.handoff.config import HandoffConfig
from channels.quiet_hours import parse_window
from channels.sms.config import SmsConfig
from channels.wechat.config import WeChatConfig
from integrations.config import REDIS_SOCKET_TIMEOUT_DEFAULT, REDIS_SOCKET_TIMEOUT_RANGE
from integrations.env import env_number
from integrations.rate_limit import Rate, parse_rate
from integrations.redis_url import SINGLE_SCHEMES, parse_redis_url

__all__ = ["ConfigError", "GatewayConfig"]


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return env_number(env, name, default, low, high, error=ConfigError)


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return env_number(env, name, default, low, high, parse=float, error=ConfigError)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be on/off (1/0, true/false, yes/no), got {raw!r}")


def _url(env: Mapping[str, str], name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name, "").strip() or default
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.hostname or parts.path):
        raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL, got {raw!r}")
    return raw.rstrip("/") if parts.scheme.startswith("http") else raw


def _redis_url(env: Mapping[str, str]) -> str | None:
    """REDIS_URL: one server (redis, rediss, unix), Sentinel or Cluster (integrations/redis_url.py)."""
    raw = env.get("REDIS_URL", "").strip()
    if not raw:
        return None
    try:
        target = parse_redis_url(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return _url(env, "REDIS_URL", None, SINGLE_SCHEMES) if target.kind == "single" else raw


def _rasa_urls(env: Mapping[str, str]) -> str:
    """RASA_URL: one http(s) URL or several, comma-separated (normalised, duplicates refused)."""
    raw = env.get("RASA_URL", "").strip() or "http://127.0.0.1:5005"
    urls = [_url({"RASA_URL": part.strip()}, "RASA_URL", None, ("http", "https")) or ""
            for part in raw.split(",") if part.strip()]
    if not urls:
        raise ConfigError(f"RASA_URL must be one or more http/https URLs, got {raw!r}")
    if len(set(urls)) != len(urls):
        raise ConfigError(f"RASA_URL names a node twice: {raw!r}")
    return ",".join(urls)


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    try:
        return parse_networks(env.get(name, ""), name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _rate(env: Mapping[str, str], name: str, default: str) -> Rate | None:
    try:
        return parse_rate(env.get(name, "").strip() or default, name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _timezone(env: Mapping[str, str]) -> str:
    name = env.get("POWERDESK_TIMEZONE", "").strip() or "Asia/Shanghai"
    try:
        ZoneInfo(name)
    except (ValueError, LookupError):  # ZoneInfoNotFoundError is a KeyError
        raise ConfigError(f"POWERDESK_TIMEZONE must be an IANA time zone, got {name!r}") from None
    return name


def _quiet_hours(env: Mapping[str, str], name: str, default: str) -> tuple[time, time] | None:
    try:
        return parse_window(env.get(name, "").strip() or default, name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


DeliveryRateLimits = tuple[tuple[tuple[str, str], tuple[Rate, ...]], ...]


def _delivery_rate_limits(env: Mapping[str, str], default: str) -> DeliveryRateLimits:
    """``"notice=5/h,10/day; sms.reply=20/h; web.notice=off"`` → ((channel, purpose), rates)
    pairs; a scope without a channel is ``*`` (every channel without its own entry)."""
    name = "DELIVERY_RATE_LIMITS"
    raw = env.get(name, "").strip() or default
    limits: dict[tuple[str, str], tuple[Rate, ...]] = {}
    for entry in (e.strip() for e in raw.split(";")):
        if not entry or entry.lower() == "off":
            continue
        scope, sep, rates = entry.partition("=")
        channel, _, purpose = scope.strip().lower().rpartition(".")
        if not sep or purpose not in ("reply", "agent", "notice"):
            raise ConfigError(f"{name}: expected [channel.]purpose=rates (purpose reply, agent "
                              f"or notice), e.g. notice=5/h,10/day; got {entry!r}")
        try:
            parsed = [parse_rate(r, name) for r in rates.split(",") if r.strip()]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        limits[(channel or "*", purpose)] = tuple(r for r in parsed if r is not None)
    return tuple(limits.items())


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs, the channels' own settings included (``wechat``: the
    WECHAT_* variables, see :class:`~channels.wechat.config.WeChatConfig`; ``sms``: the SMS_*
    ones, see :class:`~channels.sms.config.SmsConfig`; ``console``: the CONSOLE_* ones, see
    :class:`~channels.console.config.ConsoleConfig`), read and validated once at start.

    Environment variables (defaults in brackets):
    GATEWAY_HOST [127.0.0.1], GATEWAY_PORT [8000], GATEWAY_ADMIN_HOST [127.0.0.1] and
    GATEWAY_ADMIN_PORT [8001]: where /metrics and /healthz are served, never on the customer port,
    REDIS_URL [unset: ``python -m channels`` starts an embedded redis-server],
    REDIS_MAX_CONNECTIONS [512, per process; a caller waits up to 5 s for a free one],
    REDIS_SOCKET_TIMEOUT_SECONDS [5, at least 2: longer than any XREADGROUP BLOCK],
    RASA_URL [http://127.0.0.1:5005; several comma-separated URLs = a pool of Rasa nodes, see
    :mod:`channels.rasa_nodes`], RASA_HEALTH_INTERVAL_SECONDS [2: how often a pool probes its
    nodes], RASA_HEALTH_FALL [2 failed probes take a node out; a failed call does at once],
    RASA_HEALTH_RISE [2 good probes bring it back],
    RASA_TIMEOUT_SECONDS [15: Rasa waits for actions, whose deadline is 8 s],
    TICKET_LOCK_LIFETIME [60, Rasa's own default; 0 = 60: the lifetime of a ticket in Rasa's lock
    of a conversation, the same variable Rasa reads, so set it alike for both: a pool's call
    after a node died mid-turn gets RASA_TIMEOUT_SECONDS plus this, for the dead node's ticket],
    RASA_CONNECT_TIMEOUT_SECONDS [2], RASA_MAX_CONNECTIONS [200],
    GATEWAY_MAX_MESSAGE_CHARS [1000], GATEWAY_LOCK_WAIT_SECONDS [20],
    GATEWAY_CORS_ORIGINS [empty = same origin only; ``*`` = any; else comma-separated origins],
    GATEWAY_SOCKETIO_FANOUT [off; on = replies reach every tab of a session even when the tabs
    are connected to different gateway instances, through Redis pub/sub, at ~1 ms per reply],
    GATEWAY_LOG_LEVEL [INFO],
    GATEWAY_TRUSTED_PROXIES [empty: X-Forwarded-For is ignored; else comma-separated IPs/CIDRs
    of the reverse proxies whose X-Forwarded-For is believed],
    WEBCHAT_RATE_PER_SESSION [30/min], WEBCHAT_RATE_PER_ADDRESS [300/min, shared by everyone
    behind one NAT; IPv6 per /64] (``off`` disables), WEBCHAT_MAX_PENDING [10 messages of one
    session waiting for their answers in one instance],
    POWERDESK_TIMEZONE [Asia/Shanghai], DELIVERY_QUIET_HOURS [21:00-08:00 local time; ``off``
    disables: non-urgent notices wait until it ends], DELIVERY_RATE_LIMITS [notice=5/h,10/day:
    per conversation; ``[channel.]purpose=rates`` entries separated by ``;``, ``off`` for none],
    WEBCHAT_OUTBOX_TTL_SECONDS [604800: how long messages wait for an offline web visitor],
    NOTICE_CONTEXT_HOURS [72, 0 = off: how long the last notice sent to a conversation is
    passed to Rasa with the customer's messages, so replies to it are answered in its context].
    """

    host: str = "127.0.0.1"
    port: int = 8000
    admin_host: str = "127.0.0.1"
    admin_port: int = 8001
    redis_url: str | None = None
    redis_max_connections: int = 512
    redis_socket_timeout_seconds: float = REDIS_SOCKET_TIMEOUT_DEFAULT
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_timeout_seconds: float = 15.0
    rasa_connect_timeout_seconds: float = 2.0
    rasa_max_connections: int = 200
    rasa_health_interval_seconds: float = 2.0
    rasa_health_fall: int = 2
    rasa_health_rise: int = 2
    rasa_lock_lifetime_seconds: float = 60.0
    max_message_chars: int = 1000
    lock_wait_seconds: float = 20.0
    cors_origins: tuple[str, ...] = ()
    socketio_fanout: bool = False
    log_level: str = "INFO"
    trusted_proxies: tuple[Network, ...] = ()
    webchat_rate_per_session: Rate | None = Rate(30, 60)
    webchat_rate_per_address: Rate | None = Rate(300, 60)
    webchat_max_pending: int = 10
    timezone: str = "Asia/Shanghai"
    delivery_quiet_hours: tuple[time, time] | None = (time(21, 0), time(8, 0))
    delivery_rate_limits: DeliveryRateLimits = ((("*", "notice"), (Rate(5, 3600), Rate(10, 86400))),)
    webchat_outbox_ttl_seconds: int = 7 * 86400
    notice_context_hours: int = 72
    wechat: WeChatConfig = field(default_factory=WeChatConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    handoff: HandoffConfig = field(default_factory=HandoffConfig)  # HANDOFF_*, channels.handoff.config
    console: ConsoleConfig = field(default_factory=ConsoleConfig)

    @property
    def lock_ttl_seconds(self) -> float:
        """How long a conversation lock lives if its holder dies: longer than the longest turn.
        One Rasa: its call. A pool of Rasa nodes may fail a turn over to each node: the first
        call and its probe (at most 2 s), then per further node a tracker read, a call that may
        first wait out the dead node's ticket in Rasa's lock (TICKET_LOCK_LIFETIME) and a probe,
        and a last tracker read (:meth:`channels.rasa_nodes.RasaPool.send`)."""
        timeout, nodes = self.rasa_timeout_seconds, len(self.rasa_urls)
        if nodes == 1:
            return timeout + 5.0
        probe = min(2.0, timeout)
        failover = timeout + (timeout + self.rasa_lock_lifetime_seconds) + probe
        return timeout + probe + (nodes - 1) * failover + timeout + 5.0

    @property
    def rasa_urls(self) -> tuple[str, ...]:
        """The Rasa nodes of RASA_URL (one URL: today's single Rasa, no pool)."""
        return tuple(self.rasa_url.split(","))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "GatewayConfig":
        """Read and validate every gateway variable, the channels' included; a bad value
        raises :class:`ConfigError` (one line, naming the variable)."""
        env = os.environ if env is None else env
        origins_raw = env.get("GATEWAY_CORS_ORIGINS", "").strip()
        origins = tuple(o.strip().rstrip("/") for o in origins_raw.split(",") if o.strip())
        level = env.get("GATEWAY_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"GATEWAY_LOG_LEVEL must be a logging level name, got {level!r}")
        host = env.get("GATEWAY_HOST", "").strip() or "127.0.0.1"
        port = _int(env, "GATEWAY_PORT", 8000, 0, 65535)
        admin_port = _int(env, "GATEWAY_ADMIN_PORT", 8001, 0, 65535)
        if port and admin_port == port:
            raise ConfigError(f"GATEWAY_ADMIN_PORT must differ from GATEWAY_PORT ({port})")
        return cls(
            host=host,
            port=port,
            admin_host=env.get("GATEWAY_ADMIN_HOST", "").strip() or "127.0.0.1",
            admin_port=admin_port,
            redis_url=_redis_url(env),
            redis_max_connections=_int(env, "REDIS_MAX_CONNECTIONS", 512, 4, 100000),
            redis_socket_timeout_seconds=_float(env, "REDIS_SOCKET_TIMEOUT_SECONDS",
                                                REDIS_SOCKET_TIMEOUT_DEFAULT,
                                                *REDIS_SOCKET_TIMEOUT_RANGE),
            rasa_url=_rasa_urls(env),
            rasa_timeout_seconds=_float(env, "RASA_TIMEOUT_SECONDS", 15.0, 0.1, 300.0),
            rasa_connect_timeout_seconds=_float(env, "RASA_CONNECT_TIMEOUT_SECONDS", 2.0, 0.05, 60.0),
            rasa_max_connections=_int(env, "RASA_MAX_CONNECTIONS", 200, 1, 10000),
            rasa_health_interval_seconds=_float(env, "RASA_HEALTH_INTERVAL_SECONDS", 2.0, 0.1, 300.0),
            rasa_health_fall=_int(env, "RASA_HEALTH_FALL", 2, 1, 100),
            rasa_health_rise=_int(env, "RASA_HEALTH_RISE", 2, 1, 100),
            rasa_lock_lifetime_seconds=float(_int(env, "TICKET_LOCK_LIFETIME", 60, 0, 3600) or 60),
            max_message_chars=_int(env, "GATEWAY_MAX_MESSAGE_CHARS", 1000, 10, 100000),
            lock_wait_seconds=_float(env, "GATEWAY_LOCK_WAIT_SECONDS", 20.0, 0.0, 600.0),
            cors_origins=origins,
            socketio_fanout=_flag(env, "GATEWAY_SOCKETIO_FANOUT"),
            log_level=level,
            trusted_proxies=_networks(env, "GATEWAY_TRUSTED_PROXIES"),
            webchat_rate_per_session=_rate(env, "WEBCHAT_RATE_PER_SESSION", "30/min"),
            webchat_rate_per_address=_rate(env, "WEBCHAT_RATE_PER_ADDRESS", "300/min"),
            webchat_max_pending=_int(env, "WEBCHAT_MAX_PENDING", 10, 1, 10000),
            timezone=_timezone(env),
            delivery_quiet_hours=_quiet_hours(env, "DELIVERY_QUIET_HOURS", "21:00-08:00"),
            delivery_rate_limits=_delivery_rate_limits(env, "notice=5/h,10/day"),
            webchat_outbox_ttl_seconds=_int(env, "WEBCHAT_OUTBOX_TTL_SECONDS", 7 * 86400, 60,
                                            90 * 86400),
            notice_context_hours=_int(env, "NOTICE_CONTEXT_HOURS", 72, 0, 90 * 24),
            wechat=WeChatConfig.from_env(env),
            sms=SmsConfig.from_env(env),
            handoff=HandoffConfig.from_env(env, _timezone(env)),
            console=ConsoleConfig.from_env(env),
        )
