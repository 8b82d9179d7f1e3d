"""The web chat channel over real socket.io (python-socketio AsyncClient) against a gateway built
by create_app on loopback, with a real Redis and the Rasa REST contract fake."""
from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from channels.router import BUSY_TEXT, EMPTY_TEXT
from channels.webchat_protocol import bot_uttered_events, valid_session_id
from channels.messages import Button, Reply
from fakes.webclient import WebClient
from tests.support.ports import free_port

HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
async def client_factory():
    clients: list[WebClient] = []

    async def make(url: str) -> WebClient:
        client = await WebClient().connect(url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


# -- rendering like Rasa's SocketIOOutput ------------------------------------------------------

def test_bot_uttered_events_match_rasa_socketio_output():
    assert bot_uttered_events(Reply("你好")) == [{"text": "你好"}]
    assert bot_uttered_events(Reply("一\n\n二")) == [{"text": "一"}, {"text": "二"}]
    assert bot_uttered_events(Reply("一\n\n二", (Button("是", "/affirm"),))) == [
        {"text": "一", "quick_replies": []},
        {"text": "二", "quick_replies": [{"content_type": "text", "title": "是", "payload": "/affirm"}]}]
    assert bot_uttered_events(Reply("", image="https://e.com/a.png")) == [
        {"attachment": {"type": "image", "payload": {"src": "https://e.com/a.png"}}}]
    assert bot_uttered_events(Reply("", custom={"kind": "card"})) == [{"kind": "card"}]


# -- the protocol --------------------------------------------------------------------------------

async def test_session_request_without_id_gets_a_new_random_id(make_web_gateway, client_factory):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    first = await client.session(None)
    assert HEX32.match(first)
    other = await (await client_factory(gw.url)).session(payload={})
    assert HEX32.match(other) and other != first


async def test_session_request_keeps_a_valid_id_and_replaces_a_bad_one(make_web_gateway, client_factory):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    assert await client.session("f" * 32) == "f" * 32
    for bad in ["abc", "<script>x</script>aaaaaaaaaaaaaaaa", "a" * 65, 12345678901234567890]:
        confirmed = await client.session(bad)
        assert HEX32.match(confirmed) and confirmed != bad


async def test_user_uttered_reaches_rasa_as_web_session_and_is_answered(
        make_web_gateway, client_factory, rasa_fake):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    session_id = await client.session(None)
    await client.say("查一下电费", session_id, customData={"language": "zh"})
    assert await client.next() == {"text": "收到：查一下电费"}
    (call,) = rasa_fake.calls
    assert call["sender"] == f"web:{session_id}"
    assert call["metadata"] == {"customData": {"language": "zh"}, "client_address": "127.0.0.1",
                                "channel": "web"}


async def test_buttons_arrive_as_quick_replies_and_their_payload_can_be_sent_back(
        make_web_gateway, client_factory, rasa_fake):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    session_id = await client.session(None)
    await client.say("按钮", session_id)
    event = await client.next()
    assert event == {"text": "请问您要查询哪个月的电费？", "quick_replies": [
        {"content_type": "text", "title": "本月", "payload": '/inform{"month":"本月"}'},
        {"content_type": "text", "title": "上个月", "payload": '/inform{"month":"上个月"}'}]}
    await client.say(event["quick_replies"][1]["payload"], session_id)
    assert await client.next() == {"text": '收到：/inform{"month":"上个月"}'}


async def test_text_parts_and_images_are_separate_events(make_web_gateway, client_factory):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    session_id = await client.session(None)
    await client.say("两段", session_id)
    assert await client.next() == {"text": "第一段。", "quick_replies": []}
    assert (await client.next())["quick_replies"][0]["payload"] == "/affirm"
    await client.say("图片", session_id)
    assert await client.next() == {"attachment": {"type": "image",
                                                  "payload": {"src": "https://example.com/bill.png"}}}


async def test_every_tab_of_a_session_sees_the_replies(make_web_gateway, client_factory):
    gw = await make_web_gateway()
    tab1, tab2 = await client_factory(gw.url), await client_factory(gw.url)
    session_id = await tab1.session(None)
    assert await tab2.session(session_id) == session_id
    await tab1.say("你好", session_id)
    assert await tab1.next() == {"text": "收到：你好"}
    assert await tab2.next() == {"text": "收到：你好"}
    stranger = await client_factory(gw.url)
    await stranger.session(None)
    with pytest.raises(asyncio.TimeoutError):
        await stranger.next(timeout=0.3)


async def test_replies_come_back_in_the_order_typed(make_web_gateway, client_factory, rasa_fake):
    rasa_fake.jitter = 0.03
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    session_id = await client.session(None)
    texts = [f"第{n}句" for n in range(10)]
    for text in texts:
        await client.say(text, session_id)
    assert [(await client.next())["text"] for _ in texts] == [f"收到：{t}" for t in texts]
    assert rasa_fake.overlaps == []


async def test_message_before_session_request_adopts_its_session_id(make_web_gateway, client_factory,
                                                                    rasa_fake):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    await client.say("你好", "a" * 32)
    assert await asyncio.wait_for(client.confirms.get(), 5) == "a" * 32
    assert await client.next() == {"text": "收到：你好"}
    assert rasa_fake.calls[0]["sender"] == "web:" + "a" * 32


async def test_the_confirmed_session_wins_over_a_session_id_in_the_message(
        make_web_gateway, client_factory, rasa_fake):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    mine = await client.session(None)
    await client.say("你好", "b" * 32)  # someone else's session id: not honoured
    await client.next()
    assert rasa_fake.calls[0]["sender"] == f"web:{mine}"


@pytest.mark.parametrize("payload, answer", [
    (None, EMPTY_TEXT), ("纯文本", "收到：纯文本"), (42, EMPTY_TEXT), (["x"], EMPTY_TEXT),
    ({"message": None}, EMPTY_TEXT), ({"message": ["查电费"]}, EMPTY_TEXT),
    ({"message": 3201234567}, "收到：3201234567"), ({}, EMPTY_TEXT),
])
async def test_malformed_user_uttered_gets_an_answer_not_an_error(make_web_gateway, client_factory,
                                                                  payload, answer):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    await client.session(None)
    await client.sio.emit("user_uttered", payload)
    assert await client.next() == {"text": answer}


async def test_rasa_down_gives_the_busy_reply_over_socketio(make_web_gateway, client_factory):
    gw = await make_web_gateway(RASA_URL=f"http://127.0.0.1:{free_port()}")
    client = await client_factory(gw.url)
    session_id = await client.session(None)
    await client.say("查电费", session_id)
    assert await client.next() == {"text": BUSY_TEXT}


# -- HTTP endpoints ----------------------------------------------------------------------------

async def test_chat_page_is_served_at_root_and_chat_with_a_strict_policy(make_web_gateway):
    gw = await make_web_gateway()
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/chat"):
            async with http.get(gw.url + path) as r:
                assert r.status == 200
                body = await r.text()
                assert "供电服务在线客服" in body and 'lang="zh-CN"' in body
                assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        async with http.get(gw.url + "/static/chat.js") as r:
            js = await r.text()
            assert r.status == 200 and "textContent" in js and "innerHTML" not in js
        async with http.get(gw.url + "/static/socket.io.min.js") as r:
            assert r.status == 200 and "io" in await r.text()


async def test_healthz_reports_redis_and_rasa(make_web_gateway, rasa_fake):
    gw = await make_web_gateway()
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.admin_url + "/healthz") as r:
            assert r.status == 200
            body = await r.json()
        assert body["status"] == "ok" and body["redis"]["ok"] and body["rasa"]["ok"]
        rasa_fake.fail_status = 500
        async with http.get(gw.admin_url + "/healthz") as r:
            assert r.status == 503
            body = await r.json()
        assert body["redis"]["ok"] is True and body["rasa"] == {"ok": False, "detail": "status 500"}


async def test_healthz_reports_redis_down(redis_url, rasa_fake, make_web_gateway):
    gw = await make_web_gateway(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.admin_url + "/healthz") as r:
            assert r.status == 503
            body = await r.json()
    assert body["redis"]["ok"] is False and body["rasa"]["ok"] is True


async def test_metrics_count_web_messages_and_rasa_latency(make_web_gateway, client_factory):
    gw = await make_web_gateway()
    client = await client_factory(gw.url)
    session_id = await client.session(None)
    await client.say("你好", session_id)
    await client.next()
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.admin_url + "/metrics") as r:
            assert r.status == 200
            text = await r.text()
    assert re.search(r'powerdesk_gateway_messages_in_total\{channel="web"\} [1-9]', text)
    assert re.search(r'powerdesk_gateway_messages_out_total\{channel="web"\} [1-9]', text)
    assert 'powerdesk_gateway_rasa_latency_seconds_bucket{le="0.05",outcome="ok"}' in text


async def test_fanout_reaches_tabs_of_one_session_on_two_instances(make_web_gateway, client_factory):
    first = await make_web_gateway(GATEWAY_SOCKETIO_FANOUT="on")
    second = await make_web_gateway(GATEWAY_SOCKETIO_FANOUT="on")
    tab1, tab2 = await client_factory(first.url), await client_factory(second.url)
    session_id = await tab1.session(None)
    assert await tab2.session(session_id) == session_id
    await asyncio.sleep(0.3)  # the pub/sub listeners start with the first emit
    await tab1.say("你好", session_id)
    assert await tab1.next() == {"text": "收到：你好"}
    assert await tab2.next() == {"text": "收到：你好"}


async def test_without_fanout_a_tab_on_another_instance_hears_nothing(make_web_gateway, client_factory):
    first, second = await make_web_gateway(), await make_web_gateway()
    tab1, tab2 = await client_factory(first.url), await client_factory(second.url)
    session_id = await tab1.session(None)
    await tab2.session(session_id)
    await tab1.say("你好", session_id)
    assert await tab1.next() == {"text": "收到：你好"}
    with pytest.raises(asyncio.TimeoutError):
        await tab2.next(timeout=0.5)


def test_session_ids_are_matched_whole():
    assert valid_session_id("a" * 32)
    assert not valid_session_id("a" * 32 + "\n")  # `$` alone would accept a trailing newline
    assert not valid_session_id("a" * 15) and not valid_session_id("a" * 65)
