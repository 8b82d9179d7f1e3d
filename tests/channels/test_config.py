"""GatewayConfig.from_env: defaults, parsing and validation."""
from __future__ import annotations

import pytest

from channels.config import ConfigError, GatewayConfig


def test_defaults():
    config = GatewayConfig.from_env({})
    assert (config.host, config.port, config.redis_url, config.rasa_url) == (
        "127.0.0.1", 8000, None, "http://127.0.0.1:5005")
    assert config.max_message_chars == 1000 and config.cors_origins == ()
    assert config.lock_ttl_seconds > config.rasa_timeout_seconds


def test_values_are_read_and_normalised():
    config = GatewayConfig.from_env({
        "GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "8080", "REDIS_URL": "redis://10.0.0.5:6380/2",
        "RASA_URL": "http://rasa:5005/", "RASA_TIMEOUT_SECONDS": "7.5", "GATEWAY_MAX_MESSAGE_CHARS": "500",
        "GATEWAY_CORS_ORIGINS": "https://www.example.com/, https://m.example.com", "GATEWAY_LOG_LEVEL": "debug"})
    assert config.port == 8080 and config.redis_url == "redis://10.0.0.5:6380/2"
    assert config.rasa_url == "http://rasa:5005" and config.rasa_timeout_seconds == 7.5
    assert config.max_message_chars == 500 and config.log_level == "DEBUG"
    assert config.cors_origins == ("https://www.example.com", "https://m.example.com")
    assert config.socketio_fanout is False
    assert GatewayConfig.from_env({"GATEWAY_SOCKETIO_FANOUT": "on"}).socketio_fanout is True


@pytest.mark.parametrize("env", [
    {"GATEWAY_PORT": "eighty"}, {"GATEWAY_PORT": "70000"}, {"RASA_URL": "rasa:5005"},
    {"RASA_URL": "ftp://rasa"}, {"REDIS_URL": "http://127.0.0.1:6379"}, {"RASA_TIMEOUT_SECONDS": "0"},
    {"RASA_TIMEOUT_SECONDS": "soon"}, {"GATEWAY_SOCKETIO_FANOUT": "maybe"}, {"GATEWAY_MAX_MESSAGE_CHARS": "1"},
    {"GATEWAY_LOG_LEVEL": "LOUD"},
])
def test_invalid_values_are_refused_with_the_variable_named(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        GatewayConfig.from_env(env)


def test_create_app_needs_a_redis_url():
    from channels.app import create_app

    with pytest.raises(ConfigError, match="REDIS_URL"):
        create_app(GatewayConfig.from_env({}))
