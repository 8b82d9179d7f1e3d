"""Where the backends are and how long to wait for them, read from the environment once."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlsplit

from integrations.env import env_number

_DEFAULT_BASE = "http://127.0.0.1:8100"

# REDIS_SOCKET_TIMEOUT_SECONDS: how long one Redis command may wait for its answer before it
# fails (redis.exceptions.TimeoutError), so a hung Redis gives the busy reply instead of a
# stall. The floor keeps it above the gateway's XREADGROUP BLOCK (1 s, the outbound dispatcher).
REDIS_SOCKET_TIMEOUT_DEFAULT = 5.0
REDIS_SOCKET_TIMEOUT_RANGE = (2.0, 300.0)


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL, got {value!r}")
    return value


@dataclass(frozen=True)
class BackendsConfig:
    """Base URLs of the five backends and the per-request timeout."""

    billing_url: str = f"{_DEFAULT_BASE}/billing"
    outage_url: str = f"{_DEFAULT_BASE}/outage"
    queue_url: str = f"{_DEFAULT_BASE}/queue"
    tickets_url: str = f"{_DEFAULT_BASE}/tickets"
    applications_url: str = f"{_DEFAULT_BASE}/applications"
    timeout_s: float = 3.0
    retries_for_reads: int = 2

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "BackendsConfig":
        """Read ``BILLING_API_URL`` … ``BACKEND_TIMEOUT_SECONDS``; raises ValueError if invalid."""
        env = os.environ if env is None else env
        raw_timeout = env.get("BACKEND_TIMEOUT_SECONDS") or "3"
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ValueError(f"BACKEND_TIMEOUT_SECONDS must be a number, got {raw_timeout!r}") from None
        if not timeout > 0:
            raise ValueError("BACKEND_TIMEOUT_SECONDS must be positive")
        return cls(
            billing_url=_url(env, "BILLING_API_URL", cls.billing_url),
            outage_url=_url(env, "OUTAGE_API_URL", cls.outage_url),
            queue_url=_url(env, "QUEUE_API_URL", cls.queue_url),
            tickets_url=_url(env, "TICKETS_API_URL", cls.tickets_url),
            applications_url=_url(env, "APPLICATIONS_API_URL", cls.applications_url),
            timeout_s=timeout,
        )

    @classmethod
    def for_base_url(cls, base_url: str, timeout_s: float = 3.0) -> "BackendsConfig":
        """All five services under one base URL (the reference backends process)."""
        base = base_url.rstrip("/")
        return cls(f"{base}/billing", f"{base}/outage", f"{base}/queue", f"{base}/tickets",
                   f"{base}/applications", timeout_s)


def redis_socket_timeout(env: Optional[Mapping[str, str]] = None) -> float:
    """``REDIS_SOCKET_TIMEOUT_SECONDS`` [5]: per-command Redis timeout; raises ValueError if invalid."""
    low, high = REDIS_SOCKET_TIMEOUT_RANGE
    return env_number(os.environ if env is None else env, "REDIS_SOCKET_TIMEOUT_SECONDS",
                      REDIS_SOCKET_TIMEOUT_DEFAULT, low, high, parse=float)
