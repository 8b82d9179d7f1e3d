"""/healthz and /metrics are served on the admin port only, never on the customer port."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from channels.config import ConfigError, GatewayConfig
from scripts.stack import Stack, free_port
from tests.support.listeners import listening_addresses, loopback_only


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            return response.status, await response.text()


def test_admin_address_defaults_to_loopback_8001_and_must_not_be_the_customer_port():
    config = GatewayConfig.from_env({})
    assert (config.admin_host, config.admin_port) == ("127.0.0.1", 8001)
    assert GatewayConfig.from_env({"GATEWAY_ADMIN_HOST": "10.1.2.3",
                                   "GATEWAY_ADMIN_PORT": "9100"}).admin_port == 9100
    with pytest.raises(ConfigError, match="GATEWAY_ADMIN_PORT must differ from GATEWAY_PORT"):
        GatewayConfig.from_env({"GATEWAY_PORT": "8000", "GATEWAY_ADMIN_PORT": "8000"})


async def test_customer_app_answers_404_and_admin_app_serves_them(make_web_gateway):
    gw = await make_web_gateway()
    for path in ("/healthz", "/metrics"):
        assert (await _get(gw.url + path))[0] == 404
        assert (await _get(gw.admin_url + path))[0] == 200


async def test_healthz_does_not_show_rasas_version(make_web_gateway):
    gw = await make_web_gateway()
    status, body = await _get(gw.admin_url + "/healthz")
    assert status == 200 and '"rasa": {"ok": true, "detail": "ok"}' in body
    assert "Rasa" not in body and "3.6" not in body


async def test_gateway_process_serves_admin_endpoints_on_their_own_loopback_port(
        stack: Stack, redis_url: str, rasa_fake):
    port, admin_port = free_port(), free_port()
    url = await asyncio.to_thread(stack.start_gateway, "127.0.0.1", port, redis_url, rasa_fake.url,
                                  admin_port=admin_port)
    gateway = stack.processes[-1]
    try:
        admin_url = f"http://127.0.0.1:{admin_port}"
        for path in ("/healthz", "/metrics"):
            assert (await _get(url + path))[0] == 404
        status, metrics = await _get(admin_url + "/metrics")
        assert status == 200 and "powerdesk_gateway_messages_in_total" in metrics
        assert (await _get(admin_url + "/healthz"))[0] == 200
        assert (await _get(url + "/"))[0] == 200  # the web chat page stays on the customer port
        assert loopback_only(admin_port), listening_addresses(admin_port)
    finally:
        stack.processes.remove(gateway)
        gateway.stop()
