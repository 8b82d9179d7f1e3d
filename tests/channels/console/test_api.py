"""The console's JSON API over real HTTP on loopback: login, the session guard, CSRF, queue
permissions on every endpoint, the operations and the supervisor's figures."""
from __future__ import annotations

import asyncio
import time

from aiohttp import ClientSession, CookieJar
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from channels.console.api import load_canned_replies
from channels.console.auth import UserStore
from channels.console.config import DEFAULT_CANNED_REPLIES
from channels.embedded_redis import EmbeddedRedis
from channels.keys import CONFIG_KEY
from tests.channels.console.conftest import CHEAP_HASHER, PASSWORD, hand_off

WEB = "web:AAAAAAAAAAAAAAAAAAAAAA"     # a general-queue conversation
VIP = "wechat:o6_bmjrPTlm6_2sgVt7hMZOPfL2M"  # a vip-queue conversation


def _logins(outcome: str) -> float:
    return REGISTRY.get_sample_value("powerdesk_console_logins_total", {"outcome": outcome}) or 0.0


async def test_login_sets_a_strict_httponly_cookie_and_answers_the_csrf_token(gateway, users, make_agent):
    agent = make_agent(gateway)
    response = await agent.login("wang")
    assert response.status == 200
    body = await response.json()
    assert body["user"] == {"name": "wang", "role": "agent", "queues": ["general"], "display_name": "王工"}
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie
    assert response.headers["Cache-Control"] == "no-store"
    status, me = await agent.get("/console/api/me")
    assert status == 200 and me["user"]["name"] == "wang" and me["csrf_token"] == body["csrf_token"]
    # A form works as well as JSON; the typed name is case-insensitive.
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        async with http.post(gateway.url + "/console/login",
                             data={"username": "Boss", "password": PASSWORD}) as form_login:
            assert form_login.status == 200 and (await form_login.json())["user"]["role"] == "supervisor"


async def test_a_secure_cookie_when_configured(make_gateway, users, make_agent):
    agent = make_agent(await make_gateway(CONSOLE_COOKIE_SECURE="on"))
    response = await agent.login("wang")
    assert response.status == 200 and "Secure" in response.headers["Set-Cookie"]


async def test_bad_logins_are_401_and_set_no_cookie(gateway, users, make_agent):
    agent = make_agent(gateway)
    for name, password in (("wang", "wrong-password"), ("nobody", PASSWORD)):
        response = await agent.login(name, password)
        assert response.status == 401 and (await response.json()) == {"error": "invalid_credentials"}
        assert "Set-Cookie" not in response.headers
    async with agent.http.post(gateway.url + "/console/login", json={"username": "wang"}) as response:
        assert response.status == 400
    async with agent.http.post(gateway.url + "/console/login", headers={"Origin": "https://evil.example"},
                               json={"username": "wang", "password": PASSWORD}) as response:
        assert response.status == 403
    assert (await agent.get("/console/api/me"))[0] == 401


async def test_repeated_failed_logins_are_refused_with_429_and_retry_after(make_gateway, users, make_agent,
                                                                          caplog):
    gateway = await make_gateway(CONSOLE_LOGIN_ATTEMPTS="3", CONSOLE_LOGIN_ATTEMPTS_PER_ADDRESS="5",
                                 CONSOLE_LOGIN_WINDOW_MINUTES="10")
    limited_before = _logins("limited")
    agent = make_agent(gateway)
    assert [(await agent.login("wang", "wrong-password")).status for _ in range(3)] == [401] * 3
    refused = await agent.login("wang")  # the right password too, while the name is locked
    assert refused.status == 429
    assert 590 <= int(refused.headers["Retry-After"]) <= 600
    assert (await refused.json())["error"] == "too_many_attempts"
    assert (await agent.login("li")).status == 200  # another name from the address: 3 failures < 5
    assert [(await agent.login("13812345678", "x" * 8)).status for _ in range(2)] == [401, 401]
    assert (await agent.login("boss")).status == 429  # 5 failures from this address
    assert "13812345678" not in caplog.text and "*******5678" in caplog.text  # masked log lines
    assert _logins("limited") == limited_before + 2


async def test_parallel_wrong_passwords_get_no_more_tries_than_the_limit(make_gateway, users, make_agent):
    gateway = await make_gateway(CONSOLE_LOGIN_ATTEMPTS="3")
    agents = [make_agent(gateway) for _ in range(10)]
    answers = await asyncio.gather(*(agent.login("wang", f"guess-{n:04d}") for n, agent in enumerate(agents)))
    assert sorted(a.status for a in answers) == [401] * 3 + [429] * 7


async def test_every_api_path_needs_a_session_before_routing(gateway, users, make_agent):
    agent = make_agent(gateway)
    for path in ("/console/api", "/console/api/", "/console/api/me", "/console/api/no/such/path",
                 "/console/api/conversations/web:x", "/console/api/stats", "/console/api/live"):
        status, body = await agent.get(path)
        assert (status, body) == (401, {"error": "unauthenticated"}), path
    async with agent.http.delete(gateway.url + "/console/api/conversations/web:x") as response:
        assert response.status == 401
    assert (await agent.post("/console/api/no/such/path", {}))[0] == 401
    await agent.login("wang")
    assert await agent.get("/console/api/no/such/path") == (404, {"error": "not_found"})  # routed now
    async with agent.http.put(gateway.url + "/console/api/me", headers={"X-CSRF-Token": agent.csrf}) as response:
        assert response.status == 405 and (await response.json()) == {"error": "method_not_allowed"}


async def test_an_idle_or_too_old_session_is_401(gateway, users, make_agent, credis):
    agent = make_agent(gateway)
    await agent.login("wang")
    assert (await agent.get("/console/api/me"))[0] == 200
    [key] = await credis.keys("pd:{console}:session:*")
    idle = gateway.app[CONFIG_KEY].console.session_idle_seconds
    assert idle == 1800  # the default: 30 minutes
    await credis.hset(key, "last_seen", f"{time.time() - idle - 1:.3f}")  # idle for 30 min + 1 s
    assert await agent.get("/console/api/me") == (401, {"error": "unauthenticated"})
    assert await credis.keys("pd:{console}:session:*") == []
    await agent.login("wang")
    [key] = await credis.keys("pd:{console}:session:*")
    await credis.hset(key, "created_at", f"{time.time() - 12 * 3600 - 1:.3f}")  # logged in 12 h ago
    assert (await agent.get("/console/api/me"))[0] == 401


async def test_logout_ends_the_session(gateway, users, make_agent):
    agent = make_agent(gateway)
    await agent.login("wang")
    assert await agent.post("/console/api/logout") == (200, {"ok": True})
    assert (await agent.get("/console/api/me"))[0] == 401


async def test_state_changing_requests_need_the_csrf_header(gateway, users, make_agent, store):
    await hand_off(store, WEB, "general")
    agent = make_agent(gateway)
    await agent.login("wang")
    claim = f"/console/api/conversations/{WEB}/claim"
    assert await agent.post(claim, csrf="") == (403, {"error": "csrf", "header": "X-CSRF-Token"})
    assert (await agent.post(claim, csrf="not-the-token"))[0] == 403
    other = make_agent(gateway)
    await other.login("boss")
    assert (await agent.post(claim, csrf=other.csrf))[0] == 403  # another session's token
    assert (await store.get(WEB))["state"] == "waiting"
    assert (await agent.post("/console/api/logout", csrf=""))[0] == 403
    status, body = await agent.post(claim)
    assert status == 200 and body["conversation"]["agent"] == "wang"


async def test_an_agent_of_another_queue_is_refused_on_every_endpoint(gateway, users, make_agent, store):
    await hand_off(store, WEB, "general")
    await hand_off(store, VIP, "vip")
    li = make_agent(gateway)
    await li.login("li")
    status, body = await li.get("/console/api/conversations?state=waiting")
    assert status == 200 and [c["cid"] for c in body["conversations"]] == [VIP]
    base = f"/console/api/conversations/{WEB}"
    assert await li.get(base) == (403, {"error": "forbidden"})
    assert await li.get(base + "/messages") == (403, {"error": "forbidden"})
    for path, body in (("/claim", None), ("/transfer", {"queue": "vip"}), ("/transfer", {"agent": "li"}),
                       ("/close", None), ("/messages", {"text": "您好"})):
        assert await li.post(base + path, body) == (403, {"error": "forbidden"}), path
    assert (await store.get(WEB))["state"] == "waiting" and (await store.get(WEB))["queue"] == "general"
    # ... also once wang holds it, and li's active list does not show it.
    wang = make_agent(gateway)
    await wang.login("wang")
    assert (await wang.post(base + "/claim"))[0] == 200
    assert await li.get(base) == (403, {"error": "forbidden"})
    assert await li.post(base + "/messages", {"text": "您好"}) == (403, {"error": "forbidden"})
    assert (await li.get("/console/api/conversations?state=active"))[1]["conversations"] == []
    assert (await li.get("/console/api/stats"))[0] == 403  # supervisors only
    ws = await li.live()
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.send_json({"type": "reply", "cid": WEB, "text": "您好", "ref": 1})
    assert await ws.receive_json(timeout=5) == {"type": "error", "ref": 1, "cid": WEB, "status": 403,
                                                "error": "forbidden"}
    await ws.close()
    assert [m["sender"] for m in await store.messages(WEB) if m["sender"] == "agent"] == []


async def test_claim_reply_transfer_and_close(gateway, users, make_agent, store):
    await hand_off(store, WEB, "general")
    wang, boss = make_agent(gateway), make_agent(gateway)
    await wang.login("wang")
    await boss.login("boss")
    base = f"/console/api/conversations/{WEB}"
    assert (await wang.post(base + "/messages", {"text": "您好"}))[1]["error"] == "not_yours"  # not claimed
    results = await asyncio.gather(wang.post(base + "/claim"), boss.post(base + "/claim"))
    assert sorted(status for status, _ in results) == [200, 409]  # exactly one wins
    holder = (await store.get(WEB))["agent"]
    if holder != "wang":  # the supervisor won: hand it to wang by name
        assert (await boss.post(base + "/transfer", {"agent": "wang"}))[0] == 200
    status, body = await wang.post(base + "/messages", {"text": "您好，我是王工。"})
    assert status == 200 and body["delivery"]["status"] in ("sent", "queued")
    transcript = await store.messages(WEB)
    assert [(m["text"], m["agent"]) for m in transcript if m["sender"] == "agent"] == [("您好，我是王工。", "wang")]
    assert (await wang.post(base + "/messages", {"text": " "}))[0] == 400
    assert (await wang.post(base + "/messages", {"text": "长" * 2001}))[0] == 400
    status, detail = await wang.get(base)
    assert status == 200 and detail["messages"][-1]["text"] == "您好，我是王工。"
    encoded = base.replace(":", "%3A")  # the page sends encodeURIComponent(cid)
    assert await wang.get(encoded) == (status, {**detail, "conversation": {
        **detail["conversation"], "waiting_seconds": None}})
    assert detail["conversation"]["account_masked"] == "******4567"
    assert "3201234567" not in str(detail)
    status, active = await wang.get("/console/api/conversations?state=active")
    assert [c["cid"] for c in active["conversations"]] == [WEB]
    # Transfer to the vip queue: waiting there, li (vip) sees it, wang (general only) no longer.
    assert (await wang.post(base + "/transfer", {"queue": "bad queue"}))[0] == 400
    assert (await wang.post(base + "/transfer", {"agent": "nobody"}))[1]["error"] == "unknown_agent"
    status, body = await wang.post(base + "/transfer", {"queue": "vip"})
    assert status == 200 and body["conversation"]["state"] == "waiting"
    assert (await wang.get(base))[0] == 403
    li = make_agent(gateway)
    await li.login("li")
    assert (await li.post(base + "/claim"))[0] == 200
    assert (await boss.post(base + "/messages", {"text": "x"}))[1]["error"] == "not_yours"
    status, body = await li.post(base + "/close")
    assert status == 200 and body["conversation"]["state"] == "rating"
    assert (await li.post(base + "/close"))[1]["error"] == "not_open"
    assert (await li.get("/console/api/conversations/web:nope"))[0] == 404


async def test_supervisor_sees_every_queue_and_the_day_figures(gateway, users, make_agent, store):
    await hand_off(store, WEB, "general")
    await hand_off(store, VIP, "vip")
    await hand_off(store, "sms:13800001111", "manager:m001")
    boss = make_agent(gateway)
    await boss.login("boss")
    status, body = await boss.get("/console/api/conversations")
    assert {c["cid"] for c in body["conversations"]} == {WEB, VIP, "sms:13800001111"}
    assert all(c["waiting_seconds"] is not None for c in body["conversations"])
    assert (await boss.post(f"/console/api/conversations/{VIP}/claim"))[0] == 200
    await store.close(VIP, "boss")
    assert await store.record_rating(VIP, (await store.get(VIP))["handoff_id"], 4, "不错")
    status, stats = await boss.get("/console/api/stats")
    assert status == 200
    assert stats["queues"]["general"]["waiting"] == 1 and stats["queues"]["vip"]["waiting"] == 0
    assert stats["queues"]["manager:m001"]["waiting"] == 1
    assert sum(stats["per_hour"]) == 3 and stats["requests"] == 3 and stats["claims"] == 1
    assert stats["ratings"]["agents"]["boss"]["distribution"]["4"] == 1
    assert stats["ratings"]["queues"]["vip"]["average"] == 4.0
    assert stats["containment"]["handed_off"] == 3
    status, yesterday = await boss.get(f"/console/api/stats?day={store.day(time.time() - 86400)}")
    assert status == 200 and yesterday["requests"] == 0 and yesterday["day"] != stats["day"]
    assert (await boss.get("/console/api/stats?day=yesterday"))[0] == 400
    status, queues = await boss.get("/console/api/queues")
    assert {"queue": "manager:m001", "waiting": 1} in queues["queues"]
    assert {a["name"] for a in queues["agents"]} == {"wang", "li", "boss"}


async def test_canned_replies_are_served(gateway, users, make_agent):
    agent = make_agent(gateway)
    await agent.login("wang")
    status, body = await agent.get("/console/api/canned")
    assert status == 200 and body["replies"] == load_canned_replies(DEFAULT_CANNED_REPLIES)
    assert len(body["replies"]) >= 5 and all(r["title"] and r["text"] for r in body["replies"])


async def test_redis_down_is_503_not_a_traceback(make_gateway, make_agent, tmp_path):
    own = EmbeddedRedis(tmp_path / "redis")
    url = own.start()
    try:
        gateway = await make_gateway(REDIS_URL=url)
        own_redis = Redis.from_url(url)
        await UserStore(own_redis, hasher=CHEAP_HASHER).add("wang", "agent", ("general",), PASSWORD)
        await own_redis.aclose()
        agent = make_agent(gateway)
        assert (await agent.login("wang")).status == 200
        own.stop()  # Redis goes away under a running gateway
        assert (await agent.get("/console/api/me")) == (503, {"error": "unavailable"})
        response = await agent.login("wang")
        assert response.status == 503 and (await response.json()) == {"error": "unavailable"}
    finally:
        own.stop()
