"""The hand-off's environment variables, read through the gateway's configuration."""
from __future__ import annotations

import datetime as dt

import pytest

from channels.config import ConfigError, GatewayConfig


def test_defaults_and_values():
    default = GatewayConfig.from_env({}).handoff
    assert default.hours.window == (dt.time(8), dt.time(20)) and default.hours.workdays_only
    assert (default.unclaimed_minutes, default.rating_minutes, default.group) == (5.0, 30.0, "handoff")
    config = GatewayConfig.from_env({
        "HANDOFF_HOURS": "09:00-17:30,daily", "HANDOFF_UNCLAIMED_MINUTES": "0", "HANDOFF_RATING_MINUTES": "10",
        "HANDOFF_GROUP": "blue_2", "HANDOFF_CLAIM_IDLE_SECONDS": "5", "POWERDESK_TIMEZONE": "Asia/Urumqi",
        "TICKETS_API_URL": "http://127.0.0.1:9/tickets"}).handoff
    assert config.hours.window == (dt.time(9), dt.time(17, 30)) and not config.hours.workdays_only
    assert config.hours.timezone == "Asia/Urumqi"
    assert (config.unclaimed_minutes, config.rating_minutes, config.group, config.claim_idle_seconds) == \
        (0.0, 10.0, "blue_2", 5.0)
    assert config.tickets_url == "http://127.0.0.1:9/tickets"


@pytest.mark.parametrize("name, value", [
    ("HANDOFF_HOURS", "20:00-08:00"), ("HANDOFF_UNCLAIMED_MINUTES", "-1"), ("HANDOFF_RATING_MINUTES", "soon"),
    ("HANDOFF_GROUP", "a b"), ("TICKETS_API_URL", "ftp://x")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        GatewayConfig.from_env({name: value})
