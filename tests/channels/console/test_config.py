"""The CONSOLE_* settings: documented defaults, validation with one clear line."""
from __future__ import annotations

import pytest

from channels.config import GatewayConfig
from channels.config_error import ConfigError
from channels.console.config import DEFAULT_CANNED_REPLIES, ConsoleConfig


def test_defaults():
    config = GatewayConfig.from_env({}).console
    assert config == ConsoleConfig()
    assert (config.session_idle_seconds, config.session_max_seconds) == (1800, 12 * 3600)
    assert (config.login_attempts, config.login_attempts_per_address, config.login_window_seconds) == (5, 20, 900)
    assert not config.cookie_secure and config.allowed_origins == ()
    assert config.canned_replies == DEFAULT_CANNED_REPLIES and DEFAULT_CANNED_REPLIES.is_file()


def test_values_from_the_environment():
    config = ConsoleConfig.from_env({
        "CONSOLE_SESSION_IDLE_MINUTES": "10", "CONSOLE_SESSION_MAX_HOURS": "8", "CONSOLE_LOGIN_ATTEMPTS": "3",
        "CONSOLE_LOGIN_ATTEMPTS_PER_ADDRESS": "50", "CONSOLE_LOGIN_WINDOW_MINUTES": "30",
        "CONSOLE_COOKIE_SECURE": "on", "CONSOLE_ALLOWED_ORIGINS": "https://KeFu.example.cn/, http://10.0.0.5:8000",
        "TICKETS_API_URL": "http://127.0.0.1:9000/t"})
    assert (config.session_idle_seconds, config.session_max_seconds) == (600, 8 * 3600)
    assert (config.login_attempts, config.login_attempts_per_address, config.login_window_seconds) == (3, 50, 1800)
    assert config.cookie_secure
    assert config.allowed_origins == ("https://kefu.example.cn", "http://10.0.0.5:8000")
    assert config.backends.tickets_url == "http://127.0.0.1:9000/t"


@pytest.mark.parametrize("env, named", [
    ({"CONSOLE_SESSION_IDLE_MINUTES": "0"}, "CONSOLE_SESSION_IDLE_MINUTES"),
    ({"CONSOLE_SESSION_MAX_HOURS": "many"}, "CONSOLE_SESSION_MAX_HOURS"),
    ({"CONSOLE_SESSION_IDLE_MINUTES": "120", "CONSOLE_SESSION_MAX_HOURS": "1"}, "CONSOLE_SESSION_IDLE_MINUTES"),
    ({"CONSOLE_LOGIN_ATTEMPTS": "-1"}, "CONSOLE_LOGIN_ATTEMPTS"),
    ({"CONSOLE_COOKIE_SECURE": "maybe"}, "CONSOLE_COOKIE_SECURE"),
    ({"CONSOLE_ALLOWED_ORIGINS": "kefu.example.cn"}, "CONSOLE_ALLOWED_ORIGINS"),
    ({"CONSOLE_ALLOWED_ORIGINS": "https://kefu.example.cn/console"}, "CONSOLE_ALLOWED_ORIGINS"),
    ({"APPLICATIONS_API_URL": "ftp://x"}, "APPLICATIONS_API_URL"),
])
def test_bad_values_name_their_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        GatewayConfig.from_env(env)


def test_a_bad_canned_replies_file_stops_the_start(tmp_path):
    from channels.app import create_app

    bad = tmp_path / "canned.yml"
    bad.write_text("replies:\n  - title: 问候\n", encoding="utf-8")
    config = GatewayConfig.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", "CONSOLE_CANNED_REPLIES": str(bad)})
    with pytest.raises(ConfigError, match="reply 1 .* needs a title and a text"):
        create_app(config)
