"""BackendsConfig from the environment."""
from __future__ import annotations

import pytest

from integrations.config import BackendsConfig


def test_defaults():
    cfg = BackendsConfig.from_env({})
    assert cfg.billing_url == "http://127.0.0.1:8100/billing"
    assert cfg.applications_url == "http://127.0.0.1:8100/applications"
    assert cfg.timeout_s == 3.0


def test_from_env_strips_trailing_slash():
    cfg = BackendsConfig.from_env({"BILLING_API_URL": "https://billing.example.com/api/",
                                   "BACKEND_TIMEOUT_SECONDS": "1.5"})
    assert cfg.billing_url == "https://billing.example.com/api" and cfg.timeout_s == 1.5


@pytest.mark.parametrize("env", [{"BACKEND_TIMEOUT_SECONDS": "0"}, {"BACKEND_TIMEOUT_SECONDS": "soon"},
                                 {"OUTAGE_API_URL": "ftp://x"}, {"QUEUE_API_URL": "127.0.0.1:8100"}])
def test_invalid(env):
    with pytest.raises(ValueError):
        BackendsConfig.from_env(env)


def test_for_base_url():
    cfg = BackendsConfig.for_base_url("http://127.0.0.1:9/", 2)
    assert (cfg.queue_url, cfg.tickets_url, cfg.timeout_s) == (
        "http://127.0.0.1:9/queue", "http://127.0.0.1:9/tickets", 2)
