"""Typed configuration of the SMS channel, read from the environment in one place.

The channel is disabled (with one log line at start) unless ``SMS_PROVIDER`` names a provider
whose credentials, ``SMS_SIGN_NAME`` included, are all set; the rest of the product runs on its
defaults either way. Inconsistent values (an unknown provider, a malformed rate limit, a callback
token shorter than 16 characters) raise :class:`SmsConfigError` at start, never per request; it
is a :class:`channels.config.ConfigError`, so ``python -m channels`` exits 2 with one line.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path

from channels.client_address import Network, parse_networks
from channels.config_error import ConfigError
from channels.sms.templates import TemplateBook

PROVIDERS = ("aliyun", "tencent")
DEFAULT_ALIYUN_ENDPOINT = "https://dysmsapi.aliyuncs.com"
DEFAULT_TENCENT_ENDPOINT = "https://sms.tencentcloudapi.com"
DEFAULT_TENCENT_REGION = "ap-guangzhou"
DEFAULT_TEMPLATES_FILE = Path(__file__).resolve().parents[2] / "bot" / "sms_templates.yml"

MIN_CALLBACK_TOKEN_CHARS = 16
_WINDOWS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


class SmsConfigError(ConfigError):
    """The SMS environment variables are inconsistent; raised at start."""


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` messages per ``window_seconds`` (a fixed window)."""

    limit: int
    window_seconds: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_seconds}s"


def parse_limits(raw: str, name: str) -> tuple[RateLimit, ...]:
    """Parse ``"1/min,5/h,10/day"`` into rate limits; an empty string means no limit."""
    limits = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"([0-9]+)\s*/\s*([0-9]*)\s*([a-z]+)", part.lower())
        if not match or match.group(3) not in _WINDOWS or int(match.group(1)) <= 0:
            raise SmsConfigError(f"{name}: cannot read rate limit {part!r} (e.g. 5/h, 10/day)")
        count = int(match.group(2) or 1)
        limits.append(RateLimit(int(match.group(1)), count * _WINDOWS[match.group(3)]))
    return tuple(limits)


def parse_quiet_hours(raw: str) -> tuple[time, time] | None:
    """Parse ``"21:00-08:00"``; ``"off"`` or empty disables quiet hours."""
    raw = raw.strip().lower()
    if raw in ("", "off", "none", "0"):
        return None
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})", raw)
    if not match:
        raise SmsConfigError(f"SMS_QUIET_HOURS: expected HH:MM-HH:MM, got {raw!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        return time(h1, m1), time(h2, m2)
    except ValueError as exc:
        raise SmsConfigError(f"SMS_QUIET_HOURS: {exc}") from exc


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        if not raw.isascii():  # float() also reads other scripts' digits
            raise ValueError(raw)
        value = float(raw)
    except ValueError as exc:
        raise SmsConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise SmsConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _networks(raw: str) -> tuple[Network, ...]:
    try:
        return parse_networks(raw, "SMS_CALLBACK_ALLOWED_IPS")
    except ValueError as exc:
        raise SmsConfigError(str(exc)) from None


@dataclass(frozen=True)
class SmsConfig:
    """Settings of the SMS channel (see :meth:`from_env` for the variable names)."""

    provider: str = ""
    sign_name: str = ""
    aliyun_access_key_id: str = ""
    aliyun_access_key_secret: str = ""
    aliyun_endpoint: str = DEFAULT_ALIYUN_ENDPOINT
    tencent_secret_id: str = ""
    tencent_secret_key: str = ""
    tencent_sdk_app_id: str = ""
    tencent_endpoint: str = DEFAULT_TENCENT_ENDPOINT
    tencent_region: str = DEFAULT_TENCENT_REGION
    callback_token: str = ""
    callback_allowed_ips: tuple[Network, ...] = ()
    templates_file: Path = DEFAULT_TEMPLATES_FILE
    timezone: str = "Asia/Shanghai"
    quiet_hours: tuple[time, time] | None = (time(21, 0), time(8, 0))
    proactive_limits: tuple[RateLimit, ...] = (
        RateLimit(1, 60), RateLimit(5, 3600), RateLimit(10, 86400))
    reply_limits: tuple[RateLimit, ...] = (RateLimit(20, 3600),)
    send_timeout_seconds: float = 5.0
    max_attempts: int = 5
    options_ttl_seconds: int = 900
    max_parts: int = 3
    poll_interval_seconds: float = 1.0
    job_timeout_seconds: float = 60.0
    reconcile_grace_seconds: float = 300.0
    dispatch_namespace: str = "pd:sms:dispatch"
    templates: TemplateBook | None = field(default=None, compare=False)
    missing: tuple[str, ...] = field(default=(), compare=False)

    @property
    def enabled(self) -> bool:
        """True when a provider is chosen and all of its credentials are set."""
        return bool(self.provider) and not self.missing

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SmsConfig":
        """Read the SMS variables (defaults in brackets):

        SMS_PROVIDER (aliyun|tencent, unset = channel disabled), SMS_SIGN_NAME,
        ALIYUN_SMS_ACCESS_KEY_ID, ALIYUN_SMS_ACCESS_KEY_SECRET, ALIYUN_SMS_ENDPOINT
        [https://dysmsapi.aliyuncs.com], TENCENT_SMS_SECRET_ID, TENCENT_SMS_SECRET_KEY,
        TENCENT_SMS_SDK_APP_ID, TENCENT_SMS_ENDPOINT [https://sms.tencentcloudapi.com],
        TENCENT_SMS_REGION [ap-guangzhou], SMS_CALLBACK_TOKEN (at least 16 characters),
        SMS_CALLBACK_ALLOWED_IPS
        (comma-separated IPs/CIDRs, empty = any; the
        client address behind GATEWAY_TRUSTED_PROXIES), SMS_TEMPLATES_FILE [bot/sms_templates.yml],
        POWERDESK_TIMEZONE [Asia/Shanghai], SMS_QUIET_HOURS [21:00-08:00, "off" disables],
        SMS_PROACTIVE_LIMITS [1/min,5/h,10/day], SMS_REPLY_LIMITS [20/h],
        SMS_SEND_TIMEOUT_SECONDS [5], SMS_MAX_ATTEMPTS [5], SMS_OPTIONS_TTL_SECONDS [900],
        SMS_MAX_PARTS [3], SMS_JOB_TIMEOUT_SECONDS [60: one inbound message's turn, Rasa and
        the hand-over of the answer to the outbox included], SMS_RECONCILE_GRACE_SECONDS [300:
        how long a lost attempt's status report is awaited before Tencent's "not found" counts,
        see channels.sms.outbox]. The templates file is read and checked here when the
        channel is enabled (:class:`TemplateConfigError` when broken).
        """
        env = os.environ if env is None else env
        get = lambda name, default="": (env.get(name) or default).strip()  # noqa: E731
        provider = get("SMS_PROVIDER").lower()
        if provider and provider not in PROVIDERS:
            raise SmsConfigError(f"SMS_PROVIDER must be one of {PROVIDERS}, got {provider!r}")
        required = {
            "aliyun": ("SMS_SIGN_NAME", "ALIYUN_SMS_ACCESS_KEY_ID", "ALIYUN_SMS_ACCESS_KEY_SECRET"),
            "tencent": ("SMS_SIGN_NAME", "TENCENT_SMS_SECRET_ID", "TENCENT_SMS_SECRET_KEY",
                        "TENCENT_SMS_SDK_APP_ID"),
        }.get(provider, ())
        missing = tuple(name for name in required if not get(name))
        callback_token = get("SMS_CALLBACK_TOKEN")
        if callback_token and len(callback_token) < MIN_CALLBACK_TOKEN_CHARS:
            raise SmsConfigError(f"SMS_CALLBACK_TOKEN must be at least {MIN_CALLBACK_TOKEN_CHARS} "
                                 f"characters (got {len(callback_token)}); e.g. "
                                 "python -c 'import secrets; print(secrets.token_urlsafe(24))'")
        max_attempts = int(_number(env, "SMS_MAX_ATTEMPTS", 5))
        config = cls(
            provider=provider,
            sign_name=get("SMS_SIGN_NAME"),
            aliyun_access_key_id=get("ALIYUN_SMS_ACCESS_KEY_ID"),
            aliyun_access_key_secret=get("ALIYUN_SMS_ACCESS_KEY_SECRET"),
            aliyun_endpoint=get("ALIYUN_SMS_ENDPOINT", DEFAULT_ALIYUN_ENDPOINT).rstrip("/"),
            tencent_secret_id=get("TENCENT_SMS_SECRET_ID"),
            tencent_secret_key=get("TENCENT_SMS_SECRET_KEY"),
            tencent_sdk_app_id=get("TENCENT_SMS_SDK_APP_ID"),
            tencent_endpoint=get("TENCENT_SMS_ENDPOINT", DEFAULT_TENCENT_ENDPOINT).rstrip("/"),
            tencent_region=get("TENCENT_SMS_REGION", DEFAULT_TENCENT_REGION),
            callback_token=callback_token,
            callback_allowed_ips=_networks(get("SMS_CALLBACK_ALLOWED_IPS")),
            templates_file=Path(get("SMS_TEMPLATES_FILE", str(DEFAULT_TEMPLATES_FILE))),
            timezone=get("POWERDESK_TIMEZONE", "Asia/Shanghai"),
            quiet_hours=parse_quiet_hours(get("SMS_QUIET_HOURS", "21:00-08:00")),
            proactive_limits=parse_limits(
                get("SMS_PROACTIVE_LIMITS", "1/min,5/h,10/day"), "SMS_PROACTIVE_LIMITS"),
            reply_limits=parse_limits(get("SMS_REPLY_LIMITS", "20/h"), "SMS_REPLY_LIMITS"),
            send_timeout_seconds=_number(env, "SMS_SEND_TIMEOUT_SECONDS", 5.0),
            max_attempts=max_attempts,
            options_ttl_seconds=int(_number(env, "SMS_OPTIONS_TTL_SECONDS", 900)),
            max_parts=int(_number(env, "SMS_MAX_PARTS", 3)),
            job_timeout_seconds=_number(env, "SMS_JOB_TIMEOUT_SECONDS", 60.0),
            reconcile_grace_seconds=_number(env, "SMS_RECONCILE_GRACE_SECONDS", 300.0),
            missing=missing,
        )
        if config.enabled:
            config = replace(config, templates=TemplateBook.load(config.templates_file))
        return config
