"""Web chat limits and client addresses over real socket.io, against a gateway built by create_app
on loopback with a real Redis and the Rasa REST contract fake.

Every client here connects from 127.0.0.1; tests that need an address of their own trust
127.0.0.1 as a proxy and send X-Forwarded-For, which is also what a deployment behind a proxy
does. Redis is shared by the session's tests, so each test uses addresses no other test uses.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from channels.webchat import RATE_LIMITED_TEXT
from fakes.webclient import WebClient


@pytest.fixture
async def connect():
    clients: list[WebClient] = []

    async def make(url: str, forwarded_for: str | None = None) -> WebClient:
        client = WebClient()
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        await client.sio.connect(url, headers=headers, socketio_path="socket.io",
                                 transports=["websocket"])
        clients.append(client)
        await client.session(None)
        return client

    yield make
    for client in clients:
        await client.close()


def refused(limit: str) -> float:
    return REGISTRY.get_sample_value("powerdesk_webchat_rate_limited_total", {"limit": limit}) or 0.0


async def answer(client: WebClient, text: str) -> str:
    await client.say(text)
    return (await client.next())["text"]


# -- the client address ------------------------------------------------------------------------

async def test_forwarded_for_from_an_untrusted_peer_is_ignored(make_web_gateway, connect, rasa_fake):
    gw = await make_web_gateway()  # no GATEWAY_TRUSTED_PROXIES
    client = await connect(gw.url, forwarded_for="203.0.113.9")
    await answer(client, "你好")
    assert rasa_fake.calls[-1]["metadata"]["client_address"] == "127.0.0.1"


@pytest.mark.parametrize("trusted", ["127.0.0.1", "127.0.0.0/8, 10.0.0.0/8", "::ffff:127.0.0.1"])
async def test_a_trusted_proxy_chain_gives_the_customer_address(make_web_gateway, connect, rasa_fake,
                                                               trusted):
    gw = await make_web_gateway(GATEWAY_TRUSTED_PROXIES=trusted)
    # The left-most hop was typed by the customer; the proxy appended what it saw.
    client = await connect(gw.url, forwarded_for="1.1.1.1, 198.51.100.23")
    await answer(client, "你好")
    assert rasa_fake.calls[-1]["metadata"]["client_address"] == "198.51.100.23"


async def test_a_client_cannot_set_its_own_address_in_custom_data(make_web_gateway, connect, rasa_fake):
    gw = await make_web_gateway()
    client = await connect(gw.url)
    await client.say("你好", customData={"client_address": "192.0.2.1"})
    await client.next()
    assert rasa_fake.calls[-1]["metadata"]["client_address"] == "127.0.0.1"


# -- the limits --------------------------------------------------------------------------------

async def test_a_flood_of_fresh_sessions_from_one_address_stops_at_its_budget(
        make_web_gateway, connect, rasa_fake):
    gw = await make_web_gateway(GATEWAY_TRUSTED_PROXIES="127.0.0.1", WEBCHAT_RATE_PER_ADDRESS="5/h")
    before = refused("address")
    answers = [await answer(await connect(gw.url, "198.51.100.77"), f"第{n}条") for n in range(8)]
    assert answers == [f"收到：第{n}条" for n in range(5)] + [RATE_LIMITED_TEXT] * 3
    assert [c["message"] for c in rasa_fake.calls] == [f"第{n}条" for n in range(5)]
    assert refused("address") - before == 3
    # Another address is not affected.
    assert await answer(await connect(gw.url, "198.51.100.78"), "你好") == "收到：你好"


async def test_one_session_over_its_rate_is_refused_and_others_are_not(make_web_gateway, connect,
                                                                      rasa_fake):
    gw = await make_web_gateway(GATEWAY_TRUSTED_PROXIES="127.0.0.1", WEBCHAT_RATE_PER_SESSION="3/h")
    chatty = await connect(gw.url, "198.51.100.90")
    before = refused("session")
    answers = [await answer(chatty, f"第{n}条") for n in range(5)]
    assert answers == ["收到：第0条", "收到：第1条", "收到：第2条", RATE_LIMITED_TEXT, RATE_LIMITED_TEXT]
    assert refused("session") - before == 2
    neighbour = await connect(gw.url, "198.51.100.90")
    assert await answer(neighbour, "你好") == "收到：你好"
    assert len(rasa_fake.calls) == 4


async def test_a_session_over_its_pending_cap_gets_the_limit_reply(make_web_gateway, connect,
                                                                  rasa_fake):
    gw = await make_web_gateway(GATEWAY_TRUSTED_PROXIES="127.0.0.1", WEBCHAT_MAX_PENDING="2")
    client = await connect(gw.url, "198.51.100.91")
    before = refused("pending")
    for text in ("慢1", "第二条", "第三条", "第四条"):  # the first is still being answered
        await client.say(text)
    events = [(await client.next(timeout=10))["text"] for _ in range(4)]
    assert events[:2] == [RATE_LIMITED_TEXT] * 2  # at once, not after the slow answer
    assert Counter(events) == Counter([RATE_LIMITED_TEXT] * 2 + ["收到：慢1", "收到：第二条"])
    assert rasa_fake.received[f"web:{client.session_id}"] == ["慢1", "第二条"]
    assert refused("pending") - before == 2
    # Once answered, the session is served again.
    assert await answer(client, "第五条") == "收到：第五条"
    with pytest.raises(asyncio.TimeoutError):
        await client.next(timeout=0.3)


async def test_no_gateway_log_line_shows_a_whole_session_id(make_web_gateway, connect, rasa_fake,
                                                            caplog):
    caplog.set_level("DEBUG")
    gw = await make_web_gateway(GATEWAY_TRUSTED_PROXIES="127.0.0.1", WEBCHAT_RATE_PER_SESSION="1/h",
                                GATEWAY_MAX_MESSAGE_CHARS="10")
    client = await connect(gw.url, "198.51.100.92")
    await answer(client, "长" * 20)         # too long: answered by the router, logged
    assert await answer(client, "你好") == RATE_LIMITED_TEXT  # over the session budget, logged
    rasa_fake.fail_status = 500
    other = await connect(gw.url, "198.51.100.93")
    await answer(other, "你好")             # Rasa fails: busy reply, logged
    await client.close()
    await asyncio.sleep(0.1)               # the disconnect's log line
    logged = caplog.text
    assert "limit: refused a message of web:" + client.session_id[:8] in logged
    for session_id in (client.session_id, other.session_id):
        assert session_id[:8] in logged and session_id not in logged
