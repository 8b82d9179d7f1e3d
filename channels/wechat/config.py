"""Typed configuration of the WeChat official-account (公众号) channel, read from the environment.

The channel is disabled when ``WECHAT_TOKEN`` is unset: the product must run on defaults, and
``/wechat`` then answers 503 with a log line at start.
"""
from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from channels.config_error import ConfigError
from channels.digits import ascii_decimal
from channels.wechat.templates import DEFAULT_TEMPLATES_FILE, WeChatTemplates

ENCRYPT_MODES = ("plain", "compatible", "safe")
DEFAULT_API_BASE_URL = "https://api.weixin.qq.com"


class WeChatConfigError(ConfigError):
    """The WeChat environment variables are inconsistent; raised at start, never per request."""


def _aes_key_ok(key: str) -> bool:
    if len(key) != 43:
        return False
    try:
        return len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _positive(env: Mapping[str, str], name: str, default: float, allow_zero: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = ascii_decimal(raw)
    if value is None:
        raise WeChatConfigError(f"{name} must be a number in ASCII digits (e.g. 60 or 2.5), got {raw!r}")
    if value == 0 and not allow_zero:
        raise WeChatConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _switch(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "off", "false", "no"):
        return False
    if raw in ("1", "on", "true", "yes"):
        return True
    raise WeChatConfigError(f"{name} must be on or off, got {raw!r}")


@dataclass(frozen=True)
class WeChatConfig:
    """Settings of the 公众号 channel (see :meth:`from_env` for the variable names)."""

    token: str = ""
    app_id: str = ""
    app_secret: str = ""
    aes_key: str = ""
    aes_key_previous: str = ""
    encrypt_mode: str = "plain"
    api_base_url: str = DEFAULT_API_BASE_URL
    replay_window_seconds: int = 300
    max_body_bytes: int = 64 * 1024
    dedupe_ttl_seconds: int = 3600
    options_ttl_seconds: int = 600
    notice_text_in_window: bool = False
    reply_max_bytes: int = 2048
    api_timeout_seconds: float = 5.0
    job_timeout_seconds: float = 60.0
    workers: int = 64
    dispatch_namespace: str = "pd:wechat:dispatch"
    templates: WeChatTemplates = field(default_factory=WeChatTemplates)

    @property
    def enabled(self) -> bool:
        """True when the channel is configured (WECHAT_TOKEN set)."""
        return bool(self.token)

    @property
    def aes_keys(self) -> tuple[str, ...]:
        """EncodingAESKeys to try when decrypting, current first (rotation keeps the old one)."""
        return tuple(k for k in (self.aes_key, self.aes_key_previous) if k)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "WeChatConfig":
        """Read WECHAT_TOKEN, WECHAT_APP_ID, WECHAT_APP_SECRET, WECHAT_AES_KEY,
        WECHAT_AES_KEY_PREVIOUS, WECHAT_ENCRYPT_MODE (plain|compatible|safe),
        WECHAT_API_BASE_URL, WECHAT_WORKERS (conversations answered at once by this instance;
        0 = acknowledge and queue only, other instances answer), WECHAT_JOB_TIMEOUT_SECONDS,
        WECHAT_OPTIONS_TTL_SECONDS [600], WECHAT_NOTICE_TEXT_IN_WINDOW [off: on = inside the
        48-hour window a notice goes as its customer-service text even when its kind has a
        template id] and WECHAT_TEMPLATES_FILE [bot/wechat_templates.yml: template messages per
        kind, read when the channel is enabled]; validate them.

        Raises :class:`WeChatConfigError` when the channel is enabled but misconfigured.
        """
        env = os.environ if env is None else env
        mode = (env.get("WECHAT_ENCRYPT_MODE", "") or "plain").strip().lower()
        if mode in ("plaintext", "明文"):
            mode = "plain"
        cfg = cls(
            token=env.get("WECHAT_TOKEN", "").strip(),
            app_id=env.get("WECHAT_APP_ID", "").strip(),
            app_secret=env.get("WECHAT_APP_SECRET", "").strip(),
            aes_key=env.get("WECHAT_AES_KEY", "").strip(),
            aes_key_previous=env.get("WECHAT_AES_KEY_PREVIOUS", "").strip(),
            encrypt_mode=mode,
            api_base_url=(env.get("WECHAT_API_BASE_URL", "").strip() or DEFAULT_API_BASE_URL).rstrip("/"),
            workers=int(_positive(env, "WECHAT_WORKERS", 64, allow_zero=True)),
            job_timeout_seconds=_positive(env, "WECHAT_JOB_TIMEOUT_SECONDS", 60.0),
            options_ttl_seconds=int(_positive(env, "WECHAT_OPTIONS_TTL_SECONDS", 600)),
            notice_text_in_window=_switch(env, "WECHAT_NOTICE_TEXT_IN_WINDOW"),
        )
        if cfg.enabled:
            templates_file = env.get("WECHAT_TEMPLATES_FILE", "").strip()
            cfg = replace(cfg, templates=WeChatTemplates.load(
                templates_file or DEFAULT_TEMPLATES_FILE, required=bool(templates_file)))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Check consistency; a disabled channel (no token) is always valid."""
        if self.encrypt_mode not in ENCRYPT_MODES:
            raise WeChatConfigError(
                f"WECHAT_ENCRYPT_MODE must be one of {', '.join(ENCRYPT_MODES)}, got {self.encrypt_mode!r}")
        if not self.enabled:
            return
        if not self.app_id or not self.app_secret:
            raise WeChatConfigError("WECHAT_APP_ID and WECHAT_APP_SECRET are required when WECHAT_TOKEN is set")
        if self.encrypt_mode != "plain" and not self.aes_key:
            raise WeChatConfigError(f"WECHAT_AES_KEY is required in {self.encrypt_mode} mode")
        for name, key in (("WECHAT_AES_KEY", self.aes_key), ("WECHAT_AES_KEY_PREVIOUS", self.aes_key_previous)):
            if key and not _aes_key_ok(key):
                raise WeChatConfigError(f"{name} must be the 43-character EncodingAESKey from the 公众平台")
        if not self.api_base_url.startswith(("http://", "https://")):
            raise WeChatConfigError("WECHAT_API_BASE_URL must be an http(s) URL")
