"""JsonHttpClient and the clients' error mapping against real loopback servers.

The servers here stand in for a misbehaving backend (slow, flaky, broken JSON); they are real
aiohttp servers on loopback, so the client's real sockets, timeouts and retries are exercised.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import AsyncIterator

import pytest
from aiohttp import web

from integrations.billing import (
    BadBillingResponse, BillingError, BillingNotFound, BillingRejected, BillingUnavailable,
    HttpBillingClient,
)
from integrations.clients import BackendClients
from integrations.config import BackendsConfig
from integrations.errors import (
    BackendRejected, BackendUnavailable, BadBackendResponse, IntegrationError, NotFound,
)
from integrations.http import JsonHttpClient
from integrations.tickets import NewTicket
from tests.support.ports import free_port


class Misbehaving:
    """A loopback server whose routes fail in chosen ways; counts requests per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.failures_left = 0
        self.delay_s = 0.0
        self.app = web.Application()
        r = self.app.router
        r.add_get("/slow", self.slow)
        r.add_get("/flaky", self.flaky)
        r.add_post("/flaky", self.flaky)
        r.add_get("/down", self.down)
        r.add_get("/html", self.html)
        r.add_get("/empty", self.empty)
        r.add_get("/missing", self.missing)
        r.add_get("/teapot", self.teapot)
        r.add_get("/echo", self.echo)
        r.add_get("/accounts/{n}", self.wrong_shape)

    async def slow(self, request):
        self.hits["slow"] += 1
        await asyncio.sleep(self.delay_s)
        return web.json_response({"ok": True})

    async def flaky(self, request):
        self.hits[f"flaky {request.method}"] += 1
        if self.failures_left > 0:
            self.failures_left -= 1
            return web.json_response({"error": {"code": "unavailable", "message": "try later"}}, status=503)
        return web.json_response({"ok": True}, status=200)

    async def down(self, request):
        self.hits["down"] += 1
        return web.Response(status=502, text="<html>bad gateway</html>")

    async def html(self, request):
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async def empty(self, request):
        return web.Response(status=200)

    async def missing(self, request):
        self.hits["missing"] += 1
        return web.json_response({"error": {"code": "not_found", "message": "nope"}}, status=404)

    async def teapot(self, request):
        self.hits["teapot"] += 1
        return web.json_response({"error": {"code": "limit", "message": "too many"}}, status=429)

    async def echo(self, request):
        return web.json_response(dict(request.query))

    async def wrong_shape(self, request):
        return web.json_response({"account_number": request.match_info["n"]})


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def server():
    fake = Misbehaving()
    async with serve(fake.app) as url:
        fake.url = url
        yield fake


async def test_slow_backend_times_out_as_unavailable_without_retrying(server):
    server.delay_s = 1.0
    client = JsonHttpClient(server.url, timeout_s=0.3, retries_for_reads=2)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await client.get_json("/slow")
    elapsed = time.monotonic() - started
    await client.close()
    assert 0.25 < elapsed < 1.0, elapsed
    assert "0.3s" in caught.value.message
    assert server.hits["slow"] == 1


async def test_slow_backend_through_a_client_is_that_clients_unavailable(server):
    server.delay_s = 1.0
    billing = HttpBillingClient(server.url, timeout_s=0.3)
    with pytest.raises(BillingUnavailable) as caught:
        await billing.http.get_json("/slow")
    assert isinstance(caught.value, BillingError) and isinstance(caught.value, BackendUnavailable)
    await billing.close()


async def test_stopped_backend_is_unavailable():
    url = f"http://127.0.0.1:{free_port()}"
    clients = BackendClients.from_config(BackendsConfig.for_base_url(url, 1.0))
    for call in (clients.billing.get_account("3201234567"),
                 clients.outage.list_areas(),
                 clients.queue.list_halls(),
                 clients.tickets.get_ticket("GD20261123000001"),
                 clients.applications.applications_of("3201234567")):
        with pytest.raises(BackendUnavailable):
            await call
    await clients.close()


async def test_get_is_retried_on_5xx_and_then_succeeds(server):
    server.failures_left = 2
    client = JsonHttpClient(server.url, timeout_s=1, retries_for_reads=2, backoff_s=0.01)
    assert await client.get_json("/flaky") == {"ok": True}
    assert server.hits["flaky GET"] == 3
    await client.close()


async def test_get_gives_up_after_its_retries(server):
    client = JsonHttpClient(server.url, timeout_s=1, retries_for_reads=2, backoff_s=0.01)
    with pytest.raises(BackendUnavailable) as caught:
        await client.get_json("/down")
    assert caught.value.status == 502 and server.hits["down"] == 3
    await client.close()


async def test_post_is_never_retried(server):
    server.failures_left = 1
    client = JsonHttpClient(server.url, timeout_s=1, retries_for_reads=2, backoff_s=0.01)
    with pytest.raises(BackendUnavailable) as caught:
        await client.post_json("/flaky", {"x": 1})
    assert caught.value.code == "unavailable"
    assert server.hits["flaky POST"] == 1
    await client.close()


async def test_4xx_is_not_retried_and_maps_to_not_found_or_rejected(server):
    client = JsonHttpClient(server.url, timeout_s=1, retries_for_reads=2, backoff_s=0.01)
    with pytest.raises(NotFound) as missing:
        await client.get_json("/missing")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(BackendRejected) as refused:
        await client.get_json("/teapot")
    assert (refused.value.status, refused.value.code) == (429, "limit")
    assert refused.value.backend_message == "too many"
    assert server.hits["missing"] == 1 and server.hits["teapot"] == 1
    await client.close()


@pytest.mark.parametrize("path", ["/html", "/empty"])
async def test_2xx_without_json_is_a_bad_response(server, path):
    client = JsonHttpClient(server.url, timeout_s=1)
    with pytest.raises(BadBackendResponse):
        await client.get_json(path)
    await client.close()


async def test_wrong_json_shape_is_the_clients_bad_response(server):
    billing = HttpBillingClient(server.url, timeout_s=1)
    with pytest.raises(BadBillingResponse) as caught:
        await billing.get_account("3201234567")
    assert isinstance(caught.value, BadBackendResponse) and isinstance(caught.value, IntegrationError)
    await billing.close()


async def test_query_parameters_drop_none_and_path_segments_are_quoted(server):
    client = JsonHttpClient(server.url + "/", timeout_s=1)
    assert await client.get_json("/echo", {"area": "东山", "account_number": None, "n": 3}) == {
        "area": "东山", "n": "3"}
    billing = HttpBillingClient(server.url, timeout_s=1)
    with pytest.raises(BadBillingResponse):
        await billing.get_account("../tariffs")  # stays one path segment: /accounts/..%2Ftariffs
    await client.close()
    await billing.close()


async def test_session_is_lazy_and_close_is_idempotent(server):
    client = JsonHttpClient(server.url, timeout_s=1)
    assert client._session is None
    await client.close()
    assert await client.get_json("/echo") == {}
    session = client._session
    assert session is not None and not session.closed
    await client.close()
    await client.close()
    assert session.closed
    assert await client.get_json("/echo") == {}  # a closed client opens a new session on use
    await client.close()


def test_client_errors_form_one_tree_per_backend():
    assert issubclass(BillingNotFound, NotFound) and issubclass(BillingNotFound, BillingError)
    assert issubclass(BillingRejected, BackendRejected)
    assert issubclass(BillingError, IntegrationError)


def test_constructor_validation():
    with pytest.raises(ValueError):
        JsonHttpClient("http://127.0.0.1:1", timeout_s=0)
    with pytest.raises(ValueError):
        JsonHttpClient("http://127.0.0.1:1", retries_for_reads=-1)
    with pytest.raises(ValueError):
        NewTicket(kind="repair", category="c", description="d", severity="meh",
                  conversation_id="web:x", promised_by="2026-11-23T10:00:00+08:00")
