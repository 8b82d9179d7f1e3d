"""Bad input through the whole stack: web chat socket.io → gateway → Rasa (trained model) →
action server → reference backends. Marker ``e2e`` (uses the lead's session fixtures)."""
from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest

from backends.demo_accounts import RESIDENTIAL_TOU, RESIDENTIAL_TOU_PHONE
from channels.router import BUSY_TEXT, EMPTY_TEXT
from fakes.webclient import WebClient, texts

pytestmark = pytest.mark.e2e

BUSY = "系统繁忙"


@pytest.fixture
async def web(gateway_url):
    client = await WebClient().connect(gateway_url)
    await client.session(None)
    yield client
    await client.close()


@pytest.fixture
async def web_backends_down(gateway_url_backends_down):
    client = await WebClient().connect(gateway_url_backends_down)
    await client.session(None)
    yield client
    await client.close()


async def test_empty_text_gets_the_input_hint(web):
    assert await web.ask("") == [{"text": EMPTY_TEXT}]
    assert await web.ask(" \n\t ") == [{"text": EMPTY_TEXT}]


async def test_ten_thousand_characters_are_refused_politely(web):
    (event,) = await web.ask("电费为什么这么高" * 1250)
    assert "10000字" in event["text"] and "精简" in event["text"]


async def test_emoji_only_gets_a_real_answer(web):
    answer = texts(await web.ask("😡😡😡"))
    assert answer and BUSY not in answer


async def test_control_characters_do_not_break_understanding(web):
    answer = texts(await web.ask("查一下\x00电费\x07\x1b"))
    assert "户号" in answer and BUSY not in answer


async def test_html_and_script_are_just_text(web):
    events = await web.ask('<script>alert("电费")</script><img src=x onerror=alert(1)>')
    answer = texts(events)
    assert answer and BUSY not in answer
    assert all(set(e) <= {"text", "quick_replies"} for e in events)


async def test_account_number_of_the_wrong_length_is_questioned(web):
    assert "户号" in texts(await web.ask("查一下电费"))
    answer = texts(await web.ask("32012345"))
    assert "10位" in answer and BUSY not in answer


async def test_unknown_account_number_is_not_found(web):
    assert "户号" in texts(await web.ask("查一下电费"))
    answer = texts(await web.ask("3299999999"))
    assert "未查询到该户号" in answer and "3299999999" not in answer


async def test_bill_after_binding_shows_the_amount_the_backend_holds(web, backends_url):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{backends_url}/billing/accounts/{RESIDENTIAL_TOU}/bills",
                            params={"limit": "1"}) as r:
            latest = (await r.json())["bills"][0]
    amount = f"{Decimal(str(latest['amount'])).quantize(Decimal('0.01'))}元"
    assert "户号" in texts(await web.ask("查一下电费"))
    assert "后4位" in texts(await web.ask(RESIDENTIAL_TOU))
    answer = texts(await web.ask(RESIDENTIAL_TOU_PHONE[-4:]))
    assert "验证成功" in answer and amount in answer, answer
    assert RESIDENTIAL_TOU not in answer  # masked: ******4567


async def test_stopped_backend_gives_the_busy_reply(web_backends_down):
    assert "户号" in texts(await web_backends_down.ask("查一下电费"))
    answer = texts(await web_backends_down.ask(RESIDENTIAL_TOU))
    assert BUSY_TEXT in answer
