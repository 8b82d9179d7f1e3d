"""The chat page's JavaScript in Debian's chromium (Playwright) against a gateway on loopback whose
Rasa is the REST contract FAKE (fakes/rasa_rest.py): rendering, quick replies, text-only
insertion, session persistence and reconnection. The same page against the real assistant is
tested in tests/browser/ (marker ``e2e``)."""
from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs /usr/bin/chromium (make browser)")

# Predicates as functions: the page's CSP forbids eval, which Playwright uses for expressions.
ONLINE = "() => document.getElementById('status').textContent === '在线'"


@pytest.fixture
async def page():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(locale="zh-CN")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        await browser.close()
        assert errors == [], errors


async def bot_count(page) -> int:
    return await page.locator(".msg.bot").count()


async def send(page, text: str) -> None:
    before = await bot_count(page)
    await page.fill("#input", text)
    await page.press("#input", "Enter")
    await page.wait_for_function("(n) => document.querySelectorAll('.msg.bot').length > n",
                                 arg=before, timeout=10_000)


async def test_messages_quick_replies_and_markup_as_text(page, make_web_gateway, rasa_fake):
    gw = await make_web_gateway()
    await page.goto(gw.url + "/")
    await page.wait_for_function(ONLINE)
    session_id = await page.evaluate("localStorage.getItem('powerdesk.webchat.session_id')")
    assert session_id and len(session_id) == 32

    typed = '<script>window.__pd_xss = 1</script><img src=x onerror="window.__pd_xss = 2">'
    await send(page, typed)
    assert await page.locator(".msg.user").last.inner_text() == typed
    assert await page.locator(".msg.bot").last.inner_text() == f"收到：{typed}"
    assert await page.evaluate("window.__pd_xss") is None
    assert await page.locator("#messages script, #messages img").count() == 0

    await send(page, "按钮")
    buttons = page.locator(".quick-replies:not(.intro-replies) button")
    assert await buttons.all_inner_texts() == ["本月", "上个月"]
    before = await bot_count(page)
    await buttons.nth(1).click()
    await page.wait_for_function("(n) => document.querySelectorAll('.msg.bot').length > n", arg=before)
    assert await page.locator(".msg.user").last.inner_text() == "上个月"
    assert rasa_fake.received[f"web:{session_id}"][-1] == '/inform{"month":"上个月"}'
    assert await buttons.nth(0).is_disabled()

    await send(page, "两段")
    assert (await page.locator(".msg.bot").all_inner_texts())[-2:] == ["第一段。", "第二段？"]


async def test_session_survives_reload_and_gateway_restart(page, make_web_gateway, rasa_fake):
    gw = await make_web_gateway()
    await page.goto(gw.url + "/chat")
    await page.wait_for_function(ONLINE)
    session_id = await page.evaluate("localStorage.getItem('powerdesk.webchat.session_id')")
    await page.reload()
    await page.wait_for_function(ONLINE)
    assert await page.evaluate("localStorage.getItem('powerdesk.webchat.session_id')") == session_id

    # The gateway goes away and comes back on the same port: the page reconnects by itself
    # and keeps its conversation.
    port = gw.server.port
    await gw.server.close()
    await page.wait_for_function("() => document.getElementById('status').classList.contains('offline')")
    from aiohttp.test_utils import TestServer

    from channels.app import CONFIG_KEY, create_app

    revived = TestServer(create_app(gw.app[CONFIG_KEY]), host="127.0.0.1", port=port)
    await revived.start_server()
    try:
        await page.wait_for_function(ONLINE, timeout=15_000)
        await send(page, "还在吗")
        assert rasa_fake.received[f"web:{session_id}"] == ["还在吗"]
    finally:
        await revived.close()


SESSION_ID = "() => localStorage.getItem('powerdesk.webchat.session_id')"
DAY_MS = 24 * 60 * 60 * 1000


async def test_unbind_button_sends_the_unbind_request(page, make_web_gateway, rasa_fake):
    gw = await make_web_gateway()
    await page.goto(gw.url + "/")
    await page.wait_for_function(ONLINE)
    session_id = await page.evaluate(SESSION_ID)
    before = await bot_count(page)
    await page.click("#unbind")
    await page.wait_for_function("(n) => document.querySelectorAll('.msg.bot').length > n", arg=before)
    assert await page.locator(".msg.user").all_inner_texts() == ["解绑户号"]
    # The unbind payload of the assistant (binding_option entity), not text left to the NLU.
    assert rasa_fake.received[f"web:{session_id}"] == ['/bind_account{"binding_option":"unbind"}']


async def test_end_session_forgets_the_session_and_clears_the_page(page, make_web_gateway, rasa_fake):
    gw = await make_web_gateway()
    await page.goto(gw.url + "/")
    await page.wait_for_function(ONLINE)
    old = await page.evaluate(SESSION_ID)
    await send(page, "我的户号是3201234567")
    await page.click("#end-session")
    await page.wait_for_function(
        "(old) => { const id = localStorage.getItem('powerdesk.webchat.session_id');"
        " return id && id !== old && document.getElementById('status').textContent === '在线'; }",
        arg=old)
    new = await page.evaluate(SESSION_ID)
    assert len(new) == 32
    assert await page.locator(".msg.user").count() == 0
    assert await page.locator(".msg.bot:not(.intro)").count() == 0
    assert "会话已结束" in await page.locator(".msg.system").inner_text()
    await send(page, "你好")
    assert rasa_fake.received[f"web:{new}"] == ["你好"]
    assert rasa_fake.received[f"web:{old}"] == ["我的户号是3201234567"]
    await page.reload()
    await page.wait_for_function(ONLINE)
    assert await page.evaluate(SESSION_ID) == new


async def test_stored_session_is_forgotten_after_30_idle_days(page, make_web_gateway):
    gw = await make_web_gateway()
    await page.goto(gw.url + "/")
    await page.wait_for_function(ONLINE)
    first = await page.evaluate(SESSION_ID)

    async def reload_idle(days: float | None) -> str:
        await page.evaluate(
            "(ms) => ms === null ? localStorage.removeItem('powerdesk.webchat.last_active')"
            " : localStorage.setItem('powerdesk.webchat.last_active', String(Date.now() - ms))",
            None if days is None else days * DAY_MS)
        await page.reload()
        await page.wait_for_function(ONLINE)
        return await page.evaluate(SESSION_ID)

    assert await reload_idle(29) == first
    second = await reload_idle(31)
    assert second != first and len(second) == 32
    # An id stored without its last activity (by an older page) is not kept either.
    assert await reload_idle(None) not in (first, second)
