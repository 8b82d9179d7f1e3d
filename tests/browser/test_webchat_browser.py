"""The chat page in a real browser (Debian's chromium driven by Playwright) against the whole
stack: gateway → Rasa (trained model) → action server → reference backends. Marker ``e2e``."""
from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

import pytest

from backends.demo_accounts import RESIDENTIAL_TOU, RESIDENTIAL_TOU_PHONE

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 60_000
# Predicates as functions: the page's CSP forbids eval, which Playwright uses for expressions.
ONLINE = "() => document.getElementById('status').textContent === '在线'"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, gateway_url):
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{gateway_url}/chat")
    page.wait_for_function(ONLINE)
    yield page
    context.close()
    assert errors == [], errors


def bot_texts(page) -> list[str]:
    return page.locator(".msg.bot").all_inner_texts()


def say(page, text: str, expect: str) -> str:
    """Type ``text``, press Enter, wait for a new bot bubble containing ``expect``; returns it."""
    before = page.locator(".msg.bot").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(
        """([before, expect]) => Array.from(document.querySelectorAll('.msg.bot')).slice(before)
              .some(el => el.textContent.includes(expect))""",
        arg=[before, expect], timeout=ANSWER_TIMEOUT_MS)
    return "\n".join(bot_texts(page)[before:])


def latest_bill_amount(backends_url: str) -> str:
    url = f"{backends_url}/billing/accounts/{RESIDENTIAL_TOU}/bills?limit=1"
    with urllib.request.urlopen(url, timeout=10) as response:
        bill = json.load(response)["bills"][0]
    return f"{Decimal(str(bill['amount'])).quantize(Decimal('0.01'))}元"


def test_customer_binds_an_account_and_sees_the_bill_the_backend_holds(page, backends_url):
    amount = latest_bill_amount(backends_url)
    say(page, "查一下电费", "户号")
    say(page, RESIDENTIAL_TOU, "后4位")
    answer = say(page, RESIDENTIAL_TOU_PHONE[-4:], amount)
    assert "验证成功" in answer
    assert RESIDENTIAL_TOU not in answer
    user_bubbles = page.locator(".msg.user").all_inner_texts()
    assert user_bubbles == ["查一下电费", RESIDENTIAL_TOU, RESIDENTIAL_TOU_PHONE[-4:]]


def test_script_typed_by_the_customer_is_shown_as_text(page):
    typed = '<script>window.__pd_xss = 1</script><img src=x onerror="window.__pd_xss = 2"><b>粗体</b>'
    before = page.locator(".msg.bot").count()
    page.fill("#input", typed)
    page.press("#input", "Enter")
    page.wait_for_function("(n) => document.querySelectorAll('.msg.bot').length > n", arg=before,
                           timeout=ANSWER_TIMEOUT_MS)
    assert page.locator(".msg.user").last.inner_text() == typed
    assert page.evaluate("window.__pd_xss") is None
    assert page.locator("#messages script, #messages img, #messages b").count() == 0


def test_quick_reply_buttons_send_and_the_session_survives_a_reload(page):
    session_id = page.evaluate("localStorage.getItem('powerdesk.webchat.session_id')")
    assert session_id and len(session_id) == 32
    before = page.locator(".msg.bot").count()
    page.locator(".intro-replies button", has_text="停电查询").click()
    page.wait_for_function("(n) => document.querySelectorAll('.msg.bot').length > n", arg=before,
                           timeout=ANSWER_TIMEOUT_MS)
    assert page.locator(".msg.user").last.inner_text() == "停电查询"
    page.reload()
    page.wait_for_function(ONLINE)
    assert page.evaluate("localStorage.getItem('powerdesk.webchat.session_id')") == session_id


def test_unbind_button_reaches_the_assistant_and_end_session_starts_afresh(page):
    before = page.locator(".msg.bot").count()
    page.click("#unbind")
    page.wait_for_function(
        "(n) => Array.from(document.querySelectorAll('.msg.bot')).slice(n)"
        ".some(el => el.textContent.includes('无需解绑'))", arg=before, timeout=ANSWER_TIMEOUT_MS)
    assert page.locator(".msg.user").all_inner_texts() == ["解绑户号"]

    old = page.evaluate("localStorage.getItem('powerdesk.webchat.session_id')")
    page.click("#end-session")
    page.wait_for_function(
        "(old) => { const id = localStorage.getItem('powerdesk.webchat.session_id');"
        " return id && id !== old && document.getElementById('status').textContent === '在线'; }",
        arg=old)
    assert page.locator(".msg.user").count() == 0
    say(page, "怎么交电费", "缴费")
