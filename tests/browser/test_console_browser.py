"""The agents' console page in a real browser (Debian's chromium driven by Playwright).

Two kinds of tests:

* the page against a gateway of its own (a Redis database of its own, Rasa a loopback fake of its
  REST contract: no conversation here reaches Rasa) with hand-offs opened through the store as
  the gateway's service does: the supervisor's charts drawn from the API's figures, a lapsed
  session back to the login form, a 403 shown as a notice, customer text shown as text, a
  transfer between two agents' pages, a take-over by conversation id;
* end to end (marker ``e2e``): a customer on the real web chat page of gateway A (the session's),
  in front of the real Rasa, asks for a person; an agent on the console of gateway B (same Redis) sees the
  conversation on the waiting list, claims it, they exchange messages both ways, the agent closes,
  the customer is asked for a score and answers 4, and the rating is stored against the agent.

Both gateways run with ``HANDOFF_HOURS=always``: the hand-off is open whatever the real clock says
(the business-hours rules have their own tests with a pinned clock).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_sync

from scripts.stack import APP_PY, free_port
from tests.support.redis_db import CONSOLE_BROWSER_DB, redis_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 60_000
LIVE_TIMEOUT_MS = 15_000
GATEWAY_ENV = {"HANDOFF_HOURS": "always", "HANDOFF_UNCLAIMED_MINUTES": "0"}
# Predicates as functions: the pages' CSP forbids eval, which Playwright uses for expressions.
CHAT_ONLINE = "() => document.getElementById('status').textContent === '在线'"
CONSOLE_LIVE = "() => document.getElementById('live-status').textContent === '实时在线'"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


def run_async(coroutine_function) -> None:
    """Run ``coroutine_function()`` to completion in a thread of its own (Playwright's sync API
    keeps an event loop running in this one)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine_function()).result()


def add_user(redis_url: str, role: str, queues: tuple[str, ...]) -> tuple[str, str]:
    """A console user (through the console's own user store); returns (name, password)."""
    from redis.asyncio import Redis

    from channels.console.auth import UserStore

    name, password = f"{role[:3]}{secrets.token_hex(3)}", secrets.token_urlsafe(12)

    async def add() -> None:
        client = Redis.from_url(redis_url)
        try:
            await UserStore(client).add(name, role, queues, password, display_name=f"测试{name[-4:]}")
        finally:
            await client.aclose()

    run_async(add)
    return name, password


def open_console(browser, base_url: str, name: str, password: str):
    """A fresh browser context logged in on the console of ``base_url``; returns (context, page,
    the page's script errors)."""
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base_url}/console/")
    page.wait_for_selector("#login-form", state="visible")
    page.fill("#login-username", name)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_selector("#app-view", state="visible")
    page.wait_for_function(CONSOLE_LIVE, timeout=LIVE_TIMEOUT_MS)
    return context, page, errors


def conversation_item(page, list_id: str, cid: str):
    return page.locator(f'#{list_id} li.conv[data-cid="{cid}"]')


# -- the page against its own gateway (no Rasa involved) ------------------------------------

@pytest.fixture(scope="module")
def page_redis_url(redis_url: str) -> str:
    url = redis_database(redis_url, CONSOLE_BROWSER_DB)
    redis_sync.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def console_url(stack, page_redis_url: str) -> str:
    """A gateway of its own in front of a loopback fake of Rasa's REST contract."""
    port = free_port()
    fake = stack.spawn("console-rasa-fake", [str(APP_PY), "-m", "fakes.rasa_rest", "--port", str(port)],
                       dict(stack.base_env))
    rasa_url = f"http://127.0.0.1:{port}"
    stack.wait_http(fake, rasa_url + "/", timeout=30)
    return stack.start_gateway("127.0.0.1", free_port(), page_redis_url, rasa_url, GATEWAY_ENV)


def seed(redis_url: str, operations) -> None:
    """Run ``operations(store)`` (a coroutine function) against the hand-off store."""
    from redis.asyncio import Redis

    from channels.handoff.store import HandoffStore

    async def run() -> None:
        client = Redis.from_url(redis_url, decode_responses=True)
        try:
            await operations(HandoffStore(client))
        finally:
            await client.aclose()

    run_async(run)


def test_supervisor_sees_charts_drawn_from_the_apis_figures(browser, console_url, page_redis_url):
    agent, _ = add_user(page_redis_url, "agent", ("general",))
    supervisor, password = add_user(page_redis_url, "supervisor", ("general", "vip"))
    tag = secrets.token_hex(4)

    async def operations(store) -> None:
        for i in range(3):
            await store.request(f"web:sup{tag}{i}", queue="general", reason="request_human", channel="web",
                                customer_type="residential", account="")
        await store.request(f"wechat:sup{tag}", queue="vip", reason="manager", channel="wechat",
                            customer_type="enterprise", account="3100000001")
        rated = f"sms:sup{tag}"
        record = await store.request(rated, queue="general", reason="request_human", channel="sms",
                                     customer_type="commercial", account="")
        assert await store.claim(rated, agent)
        assert await store.close(rated, agent)
        assert await store.record_rating(rated, record["handoff_id"], 4, "")

    seed(page_redis_url, operations)
    context, page, errors = open_console(browser, console_url, supervisor, password)
    try:
        assert page.locator("#tab-supervisor").is_visible()
        page.click("#tab-supervisor")
        page.wait_for_function(
            "() => ['chart-queues', 'chart-hourly', 'chart-agents', 'chart-queue-ratings', 'chart-containment']"
            ".every(id => window.Chart && Chart.getChart(id))")
        stats = page.evaluate("() => fetch('/console/api/stats').then(r => r.json())")
        charts = page.evaluate("""() => {
            const data = id => Chart.getChart(id).data;
            const box = document.getElementById('chart-hourly').getBoundingClientRect();
            return {
              queues: data('chart-queues').labels,
              waiting: data('chart-queues').datasets[0].data,
              hourly: data('chart-hourly').datasets[0].data,
              agents: data('chart-agents').labels,
              fours: data('chart-agents').datasets[3].data,
              containment: data('chart-containment').datasets[0].data,
              size: [box.width, box.height],
              waitingFigure: document.getElementById('fig-waiting').textContent,
            };
        }""")
        assert charts["hourly"] == stats["per_hour"] and sum(charts["hourly"]) >= 5
        names = sorted(stats["queues"])
        assert charts["waiting"] == [stats["queues"][q]["waiting"] for q in names]
        assert charts["queues"][names.index("vip")] == "VIP"
        row = [i for i, label in enumerate(charts["agents"]) if label.startswith(agent)]
        assert len(row) == 1 and charts["fours"][row[0]] == stats["ratings"]["agents"][agent]["distribution"]["4"] == 1
        assert "均分 4.00" in charts["agents"][row[0]]
        handed = stats["containment"]["handed_off"]
        assert charts["containment"] == [stats["containment"]["conversations"] - handed, handed]
        assert charts["size"][0] > 100 and charts["size"][1] > 100  # drawn, not collapsed
        assert charts["waitingFigure"] == str(sum(q["waiting"] for q in stats["queues"].values()))
    finally:
        context.close()
    assert errors == [], errors


def test_waiting_list_shows_customer_text_as_text_and_a_lapsed_session_returns_to_login(
        browser, console_url, page_redis_url):
    name, password = add_user(page_redis_url, "agent", ("general",))
    cid = f"web:xss{secrets.token_hex(4)}"
    typed = '<img src=x onerror="window.__pd_xss = 1"><b>粗体</b>转人工'

    async def operations(store) -> None:
        await store.request(cid, queue="general", reason="request_human", channel="web",
                            customer_type="commercial", account="3100000123")
        await store.append_message(cid, "customer", typed)

    context, page, errors = open_console(browser, console_url, name, password)
    try:
        seed(page_redis_url, operations)  # arrives live, through the socket
        item = conversation_item(page, "waiting-list", cid)
        item.wait_for(timeout=LIVE_TIMEOUT_MS)
        assert "3100000123" not in item.inner_text() and "0123" in item.inner_text()
        assert "商业" in item.inner_text()
        item.click()
        page.wait_for_function("(text) => document.getElementById('chat-messages').textContent.includes(text)",
                               arg=typed)
        assert page.evaluate("() => window.__pd_xss") is None
        assert page.locator("#chat-messages img, #chat-messages b, #waiting-list img, #waiting-list b").count() == 0

        redis_sync.Redis.from_url(page_redis_url).delete(
            *redis_sync.Redis.from_url(page_redis_url).keys("pd:{console}:session:*"))
        page.click("#tab-work")  # any API call now answers 401
        page.wait_for_selector("#login-view", state="visible")
        assert "重新登录" in page.inner_text("#login-error")
    finally:
        context.close()
    assert errors == [], errors


def test_claiming_a_conversation_moved_to_another_queue_shows_the_refusal(browser, console_url, page_redis_url):
    name, password = add_user(page_redis_url, "agent", ("general",))
    cid = f"wechat:moved{secrets.token_hex(4)}"

    async def request(store) -> None:
        await store.request(cid, queue="general", reason="request_human", channel="wechat",
                            customer_type="residential", account="")

    async def move(store) -> None:
        assert await store.transfer(cid, queue="vip")

    seed(page_redis_url, request)
    context, page, errors = open_console(browser, console_url, name, password)
    try:
        item = conversation_item(page, "waiting-list", cid)
        item.click()
        page.wait_for_selector("#claim", state="visible")
        seed(page_redis_url, move)  # a supervisor moved it meanwhile: no longer this agent's queue
        item.wait_for(state="detached", timeout=LIVE_TIMEOUT_MS)  # the live channel said so
        page.click("#claim")
        page.wait_for_selector("#notice", state="visible")
        assert "无权" in page.inner_text("#notice")
        assert page.locator("#mine-list li.conv").count() == 0
    finally:
        context.close()
    assert errors == [], errors


def test_agent_claims_transfers_to_a_colleague_who_answers_with_a_canned_reply(
        browser, console_url, page_redis_url):
    first, first_password = add_user(page_redis_url, "agent", ("general",))
    second, second_password = add_user(page_redis_url, "agent", ("vip",))
    cid = f"web:handover{secrets.token_hex(4)}"  # no tab of it is open: replies wait in its outbox

    async def request(store) -> None:
        await store.request(cid, queue="general", reason="fallback", channel="web",
                            customer_type="residential", account="")

    seed(page_redis_url, request)
    context, page, errors = open_console(browser, console_url, first, first_password)
    other_context, other, other_errors = open_console(browser, console_url, second, second_password)
    try:
        assert conversation_item(other, "waiting-list", cid).count() == 0  # not the vip agent's queue
        conversation_item(page, "waiting-list", cid).click()
        page.click("#claim")
        conversation_item(page, "mine-list", cid).wait_for(timeout=LIVE_TIMEOUT_MS)
        page.click("#transfer-open")
        page.select_option("#transfer-agent", second)
        page.click("#transfer-form button[type=submit]")
        conversation_item(page, "mine-list", cid).wait_for(state="detached", timeout=LIVE_TIMEOUT_MS)

        handed = conversation_item(other, "mine-list", cid)
        handed.wait_for(timeout=LIVE_TIMEOUT_MS)  # live, on the colleague's page

        async def customer_writes(store) -> None:
            await store.append_message(cid, "customer", "还在吗？")

        seed(page_redis_url, customer_writes)
        other.wait_for_selector(f'#mine-list li.conv.unread[data-cid="{cid}"]', timeout=LIVE_TIMEOUT_MS)
        handed.click()
        other.wait_for_function("() => document.getElementById('chat-transcript').textContent.includes('还在吗？')")
        assert other.locator("#mine-list li.conv.unread").count() == 0
        other.wait_for_selector("#composer", state="visible")
        other.select_option("#canned", label="问候")
        assert other.input_value("#reply").startswith("您好，我是供电服务人工客服")
        other.press("#reply", "Enter")
        other.wait_for_function("() => document.querySelectorAll('#chat-transcript .msg.agent').length === 1",
                                timeout=LIVE_TIMEOUT_MS)
        assert second in other.inner_text("#chat-transcript .msg.agent .msg-head")
        redis = redis_sync.Redis.from_url(page_redis_url, decode_responses=True)
        assert redis.hget(f"pd:{{handoff}}:conv:{cid}", "agent") == second
    finally:
        other_context.close()
        context.close()
    assert errors == [] and other_errors == [], errors + other_errors


def test_agent_takes_over_a_conversation_the_assistant_was_handling(browser, console_url, page_redis_url):
    name, password = add_user(page_redis_url, "agent", ("general",))
    cid = f"wechat:otakeover{secrets.token_hex(6)}"
    context, page, errors = open_console(browser, console_url, name, password)
    try:
        page.fill("#takeover-cid", "not-a-conversation")
        page.press("#takeover-cid", "Enter")
        page.wait_for_selector("#notice", state="visible")
        assert "会话ID格式不正确" in page.inner_text("#notice")

        page.fill("#takeover-cid", cid)
        page.click("#takeover-form button[type=submit]")
        conversation_item(page, "mine-list", cid).wait_for(timeout=LIVE_TIMEOUT_MS)
        page.wait_for_selector("#composer", state="visible")  # the pane shows it, mine to answer
        assert "微信" in page.inner_text("#chat-title")
        record = redis_sync.Redis.from_url(page_redis_url, decode_responses=True).hgetall(f"pd:{{handoff}}:conv:{cid}")
        assert (record["state"], record["agent"], record["queue"]) == ("active", name, "general")
    finally:
        context.close()
    assert errors == [], errors


# -- end to end: customer on gateway A with the real Rasa, agent on gateway B ---------------

@pytest.fixture(scope="module")
def two_gateways(stack, redis_url: str, rasa_url: str, gateway_url: str) -> tuple[str, str]:
    """Gateway A for the customer (the session's), gateway B for the agent: one Redis, one Rasa."""
    return gateway_url, stack.start_gateway("127.0.0.1", free_port(), redis_url, rasa_url, GATEWAY_ENV)


def wait_for_bot_text(page, before: int, expect: str, timeout: int = ANSWER_TIMEOUT_MS) -> None:
    page.wait_for_function(
        """([before, expect]) => Array.from(document.querySelectorAll('.msg.bot')).slice(before)
              .some(el => el.textContent.includes(expect))""",
        arg=[before, expect], timeout=timeout)


def customer_says(page, text: str) -> int:
    before = page.locator(".msg.bot").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    return before


def wait_until(check, timeout: float = 20.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.mark.e2e
def test_customer_on_web_chat_and_agent_on_console_from_request_to_stored_rating(
        browser, two_gateways, redis_url):
    customer_url, agent_url = two_gateways
    agent, password = add_user(redis_url, "agent", ("general",))
    supervisor, supervisor_password = add_user(redis_url, "supervisor", ("general", "vip"))

    customer_context = browser.new_context(locale="zh-CN")
    customer = customer_context.new_page()
    customer_errors: list[str] = []
    customer.on("pageerror", lambda exc: customer_errors.append(str(exc)))
    agent_context = console = None
    try:
        customer.goto(f"{customer_url}/")
        customer.wait_for_function(CHAT_ONLINE)
        cid = "web:" + customer.evaluate("() => localStorage.getItem('powerdesk.webchat.session_id')")
        agent_context, console, agent_errors = open_console(browser, agent_url, agent, password)

        # The customer asks for a person; the conversation appears on the agent's waiting list.
        before = customer_says(customer, "转人工")
        wait_for_bot_text(customer, before, "已为您转接人工客服")  # the gateway opened the hand-off
        item = conversation_item(console, "waiting-list", cid)
        item.wait_for(timeout=ANSWER_TIMEOUT_MS)
        assert "网页" in item.inner_text()

        # Claim; messages both ways (customer on A, agent on B).
        item.click()
        before = customer.locator(".msg.bot").count()
        console.click("#claim")
        conversation_item(console, "mine-list", cid).wait_for(timeout=LIVE_TIMEOUT_MS)
        console.wait_for_selector("#composer", state="visible")
        wait_for_bot_text(customer, before, "人工客服已接入", LIVE_TIMEOUT_MS)
        reply = "您好，我是人工客服，请问有什么可以帮您？"
        before = customer.locator(".msg.bot").count()
        console.fill("#reply", reply)
        console.press("#reply", "Enter")
        wait_for_bot_text(customer, before, reply, LIVE_TIMEOUT_MS)

        question = "我家从昨晚开始停电了，什么时候能来电？"
        customer_says(customer, question)
        console.wait_for_function("(text) => Array.from(document.querySelectorAll('#chat-messages .msg.customer'))"
                                  ".some(el => el.textContent.includes(text))", arg=question,
                                  timeout=LIVE_TIMEOUT_MS)
        answer = "已为您查询，抢修人员正在处理，预计两小时内恢复供电。"
        before = customer.locator(".msg.bot").count()
        console.fill("#reply", answer)
        console.press("#reply", "Enter")
        wait_for_bot_text(customer, before, answer, LIVE_TIMEOUT_MS)

        # Close (two clicks); the customer is asked for a score and answers 4.
        before = customer.locator(".msg.bot").count()
        console.click("#close")
        console.click("#close")
        conversation_item(console, "mine-list", cid).wait_for(state="detached", timeout=LIVE_TIMEOUT_MS)
        wait_for_bot_text(customer, before, "请为本次服务评分", ANSWER_TIMEOUT_MS)
        before = customer_says(customer, "4")
        wait_for_bot_text(customer, before, "感谢您的评价")

        # Stored: the record, the ratings stream and the supervisor's figures.
        redis = redis_sync.Redis.from_url(redis_url, decode_responses=True)
        record = wait_until(lambda: (r := redis.hgetall(f"pd:{{handoff}}:conv:{cid}")).get("rating") and r)
        assert record and record["rating"] == "4" and record["agent"] == agent and record["state"] == "closed"
        ratings = [fields for _, fields in redis.xrevrange("pd:{handoff}:ratings", count=200)
                   if fields.get("cid") == cid]
        assert [(r["score"], r["agent"], r["handoff_id"]) for r in ratings] == [("4", agent, record["handoff_id"])]
        api = browser.new_context().request
        login = api.post(f"{agent_url}/console/login",
                         data={"username": supervisor, "password": supervisor_password})
        assert login.ok
        stats = api.get(f"{agent_url}/console/api/stats").json()
        assert stats["ratings"]["agents"][agent]["distribution"]["4"] == 1
        api.dispose()
        transcript = [m["text"] for m in console.evaluate(
            "(cid) => fetch('/console/api/conversations/' + encodeURIComponent(cid) + '/messages')"
            ".then(r => r.json()).then(b => b.messages)", cid)]
        assert question in transcript and reply in transcript and answer in transcript
    finally:
        if agent_context is not None:
            agent_context.close()
        customer_context.close()
    assert customer_errors == [], customer_errors
    assert agent_errors == [], agent_errors
