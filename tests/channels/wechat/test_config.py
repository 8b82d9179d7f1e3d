"""WeChatConfig.from_env: names, defaults and validation."""
from __future__ import annotations

import pytest

from channels.wechat.config import DEFAULT_API_BASE_URL, WeChatConfig, WeChatConfigError

KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_unset_token_disables_the_channel_on_defaults():
    cfg = WeChatConfig.from_env({})
    assert not cfg.enabled
    assert cfg.encrypt_mode == "plain"
    assert cfg.api_base_url == DEFAULT_API_BASE_URL


def test_full_safe_mode_configuration():
    cfg = WeChatConfig.from_env({
        "WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s",
        "WECHAT_AES_KEY": KEY, "WECHAT_AES_KEY_PREVIOUS": "B" * 43, "WECHAT_ENCRYPT_MODE": "SAFE",
        "WECHAT_API_BASE_URL": "http://127.0.0.1:9999/"})
    assert cfg.enabled and cfg.encrypt_mode == "safe"
    assert cfg.aes_keys == (KEY, "B" * 43)
    assert cfg.api_base_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize("env", [
    {"WECHAT_TOKEN": "t"},  # no AppID/secret
    {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s", "WECHAT_ENCRYPT_MODE": "safe"},
    {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s", "WECHAT_ENCRYPT_MODE": "safe",
     "WECHAT_AES_KEY": "short"},
    {"WECHAT_ENCRYPT_MODE": "rot13"},
    {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s", "WECHAT_WORKERS": "-1"},
])
def test_inconsistent_configuration_fails_at_start(env):
    with pytest.raises(WeChatConfigError):
        WeChatConfig.from_env(env)
