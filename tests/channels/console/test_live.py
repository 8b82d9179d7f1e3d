"""The live WebSocket: events written on one gateway instance reach the agents connected to
another, filtered by queue; Origin and session checks; replies over the socket."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from channels.console import live
from channels.handoff.store import HandoffStore
from channels.keys import REDIS_KEY
from tests.channels.console.conftest import hand_off

WEB = "web:BBBBBBBBBBBBBBBBBBBBBB"


async def _next_event(ws, timeout: float = 5.0) -> dict:
    """The next frame that is not a pong."""
    while True:
        frame = await ws.receive_json(timeout=timeout)
        if frame["type"] != "pong":
            return frame


async def test_an_agent_on_instance_b_sees_a_customer_on_instance_a(make_gateway, users, make_agent):
    instance_a, instance_b = await make_gateway(), await make_gateway()
    wang, li = make_agent(instance_b), make_agent(instance_b)
    await wang.login("wang")
    await li.login("li")
    wang_ws, li_ws = await wang.live(), await li.live()
    hello = await wang_ws.receive_json(timeout=5)
    assert hello["type"] == "hello" and hello["user"]["name"] == "wang"
    assert (await li_ws.receive_json(timeout=5))["type"] == "hello"

    store_a = HandoffStore(instance_a.app[REDIS_KEY])  # what instance A's router writes
    await hand_off(store_a, WEB, "general")
    event = await _next_event(wang_ws)
    assert (event["type"], event["cid"], event["queue"], event["channel"]) == ("requested", WEB, "general", "web")
    assert isinstance(event["at"], float) and event["id"]
    await store_a.claim(WEB, "wang")
    assert (await _next_event(wang_ws))["type"] == "claimed"
    await store_a.append_message(WEB, "customer", "我家停电了")
    event = await _next_event(wang_ws)
    assert (event["type"], event["sender"], event["text"]) == ("message", "customer", "我家停电了")

    # li (vip only) saw none of it: the first frame li gets is the vip hand-off that follows.
    await hand_off(store_a, "sms:13800002222", "vip")
    event = await _next_event(li_ws)
    assert (event["type"], event["cid"]) == ("requested", "sms:13800002222")
    await wang_ws.close()
    await li_ws.close()


async def test_a_conversation_transferred_to_an_agent_by_name_reaches_them(make_gateway, users, make_agent,
                                                                          store):
    gateway = await make_gateway()
    li = make_agent(gateway)
    await li.login("li")
    ws = await li.live()
    await ws.receive_json(timeout=5)
    await hand_off(store, WEB, "general")
    await store.transfer(WEB, agent="li")  # li serves vip only, but now holds this one
    event = await _next_event(ws)
    assert (event["type"], event["agent"], event["from_queue"]) == ("transferred", "li", "general")
    await store.append_message(WEB, "customer", "在吗？")
    event = await _next_event(ws)
    assert (event["type"], event["text"]) == ("message", "在吗？")
    await ws.send_json({"type": "reply", "cid": WEB, "text": "在的，请讲。", "ref": "r1"})
    frames = [await _next_event(ws), await _next_event(ws)]
    ack = next(f for f in frames if f["type"] == "ack")
    assert ack["ref"] == "r1" and ack["ok"] is True
    echoed = next(f for f in frames if f["type"] == "message")
    assert (echoed["sender"], echoed["agent"], echoed["text"]) == ("agent", "li", "在的，请讲。")
    await ws.send_json({"type": "ping", "ref": 7})
    assert await ws.receive_json(timeout=5) == {"type": "pong", "ref": 7}
    await ws.send_str("not json")
    assert (await ws.receive_json(timeout=5))["error"] == "bad_frame"
    await ws.close()


async def test_the_socket_checks_the_origin_and_the_session(gateway, users, make_agent):
    agent = make_agent(gateway)
    await agent.login("wang")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await agent.live(origin="https://evil.example")
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await agent.http.ws_connect(gateway.url + "/console/api/live")  # no Origin at all
    assert refused.value.status == 403
    stranger = make_agent(gateway)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await stranger.live()
    assert refused.value.status == 401


async def test_the_socket_closes_when_the_session_ends(gateway, users, make_agent, monkeypatch):
    monkeypatch.setattr(live, "SESSION_CHECK_SECONDS", 0.2)
    agent = make_agent(gateway)
    await agent.login("wang")
    ws = await agent.live()
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    assert await agent.post("/console/api/logout") == (200, {"ok": True})
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == live.CLOSE_SESSION_ENDED


async def test_a_change_of_queues_applies_to_an_open_socket(gateway, users, make_agent, store, monkeypatch):
    monkeypatch.setattr(live, "SESSION_CHECK_SECONDS", 0.2)
    li = make_agent(gateway)
    await li.login("li")
    ws = await li.live()
    await ws.receive_json(timeout=5)
    await users.update("li", queues=("vip", "general"))  # e.g. `users update li --queues vip,general`
    await asyncio.sleep(0.5)  # a session check re-reads the user
    await hand_off(store, WEB, "general")
    event = await _next_event(ws)
    assert (event["type"], event["cid"]) == ("requested", WEB)
    await users.remove("li")
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == live.CLOSE_SESSION_ENDED


async def test_a_customer_message_reaches_the_holder_when_the_instance_started_later(
        make_gateway, users, make_agent, store):
    await hand_off(store, WEB, "general")
    await store.transfer(WEB, agent="li")  # before this instance read any event
    gateway = await make_gateway()
    li = make_agent(gateway)
    await li.login("li")
    ws = await li.live()
    await ws.receive_json(timeout=5)
    await store.append_message(WEB, "customer", "还在吗？")
    event = await _next_event(ws)
    assert (event["type"], event["cid"], event["text"]) == ("message", WEB, "还在吗？")
    await ws.close()


async def test_a_reply_after_the_session_ended_closes_the_socket(gateway, users, make_agent, store, monkeypatch):
    monkeypatch.setattr(live, "REPLY_CHECK_SECONDS", 0.0)
    await hand_off(store, WEB, "general")
    await store.claim(WEB, "wang")
    agent = make_agent(gateway)
    await agent.login("wang")
    ws = await agent.live()
    await ws.receive_json(timeout=5)
    assert await agent.post("/console/api/logout") == (200, {"ok": True})
    await ws.send_json({"type": "reply", "cid": WEB, "text": "还在吗", "ref": 1})
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == live.CLOSE_SESSION_ENDED
    assert [m for m in await store.messages(WEB) if m["sender"] == "agent"] == []
