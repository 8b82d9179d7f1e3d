"""The agent console's settings, read from the environment once (part of the gateway's config).

Environment variables (defaults in brackets):
CONSOLE_SESSION_IDLE_MINUTES [30: a session unused this long ends; every API request slides it],
CONSOLE_SESSION_MAX_HOURS [12: a session ends this long after the login, used or not],
CONSOLE_LOGIN_ATTEMPTS [5: failed logins per user name within the window; then that name is
refused (429) until the window has passed],
CONSOLE_LOGIN_ATTEMPTS_PER_ADDRESS [20: failed logins per client address (IPv6: per /64) within
the window; successful logins are never counted],
CONSOLE_LOGIN_WINDOW_MINUTES [15],
CONSOLE_COOKIE_SECURE [off; on = the session cookie is sent over HTTPS only: set it whenever the
console is served through TLS],
CONSOLE_ALLOWED_ORIGINS [empty = the console's own origin only; else comma-separated origins
also accepted for the live WebSocket and the login form (e.g. ``https://kefu.example.cn``)],
CONSOLE_CANNED_REPLIES [bot/canned_replies.yml: the agents' canned replies],
CONSOLE_LOOKUP_TIMEOUT_SECONDS [2: how long the waiting list waits for Rasa's tracker and the
tickets and applications backends before showing a conversation without them]; the backends
themselves: TICKETS_API_URL, APPLICATIONS_API_URL, BACKEND_TIMEOUT_SECONDS (integrations.config).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from channels.config_error import ConfigError
from integrations.config import BackendsConfig
from integrations.env import env_number

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CANNED_REPLIES = ROOT / "bot" / "canned_replies.yml"


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be on/off (1/0, true/false, yes/no), got {raw!r}")


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    origins = []
    for raw in (o.strip().rstrip("/") for o in env.get(name, "").split(",")):
        if not raw:
            continue
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ConfigError(f"{name}: expected origins such as https://kefu.example.cn, got {raw!r}")
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(origins)


@dataclass(frozen=True)
class ConsoleConfig:
    """The console's settings (see the module docstring for the variables)."""

    session_idle_seconds: int = 30 * 60
    session_max_seconds: int = 12 * 3600
    login_attempts: int = 5
    login_attempts_per_address: int = 20
    login_window_seconds: int = 15 * 60
    cookie_secure: bool = False
    allowed_origins: tuple[str, ...] = ()
    canned_replies: Path = DEFAULT_CANNED_REPLIES
    lookup_timeout_seconds: float = 2.0
    backends: BackendsConfig = field(default_factory=BackendsConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "ConsoleConfig":
        """Read and validate the CONSOLE_* variables; a bad value raises :class:`ConfigError`."""
        def number(name: str, default, low, high, parse=int):
            return env_number(env, name, default, low, high, parse=parse, error=ConfigError)

        idle = number("CONSOLE_SESSION_IDLE_MINUTES", 30, 1, 24 * 60) * 60
        longest = number("CONSOLE_SESSION_MAX_HOURS", 12, 1, 24 * 30) * 3600
        if idle > longest:
            raise ConfigError("CONSOLE_SESSION_IDLE_MINUTES must not exceed CONSOLE_SESSION_MAX_HOURS")
        canned = env.get("CONSOLE_CANNED_REPLIES", "").strip()
        try:
            backends = BackendsConfig.from_env(env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            session_idle_seconds=idle,
            session_max_seconds=longest,
            login_attempts=number("CONSOLE_LOGIN_ATTEMPTS", 5, 1, 1000),
            login_attempts_per_address=number("CONSOLE_LOGIN_ATTEMPTS_PER_ADDRESS", 20, 1, 100000),
            login_window_seconds=number("CONSOLE_LOGIN_WINDOW_MINUTES", 15, 1, 24 * 60) * 60,
            cookie_secure=_flag(env, "CONSOLE_COOKIE_SECURE"),
            allowed_origins=_origins(env, "CONSOLE_ALLOWED_ORIGINS"),
            canned_replies=Path(canned) if canned else DEFAULT_CANNED_REPLIES,
            lookup_timeout_seconds=number("CONSOLE_LOOKUP_TIMEOUT_SECONDS", 2.0, 0.1, 30.0, float),
            backends=backends,
        )
