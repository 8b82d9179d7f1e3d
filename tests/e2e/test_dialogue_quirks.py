"""Issue 10's dialogue quirks and short confirmations in context, through the trained model, a
real Rasa server, the action server, Redis and the reference backends. Marker ``e2e``.

- digits typed after the binding lock get the lock message again, not a goodbye;
- a message of markup or symbols only gets the ordinary fallback, not the bot-challenge answer;
- a vague "嗯…就是那个" after a fallback is the second misunderstanding: a human is offered;
- a short yes / no answers the yes/no question the assistant just asked.
"""
from __future__ import annotations

import uuid

import aiohttp
import pytest

from backends.demo_accounts import ENTERPRISE, ENTERPRISE_PHONE
from integrations.customer_store import VerificationLimits
from tests.actions.account_data import unknown_account

pytestmark = pytest.mark.e2e

GOODBYE = "感谢您的咨询"
LOCKED = "户号绑定功能已暂时锁定"
BOT_CHALLENGE = "不是真人"
REPHRASE = "换个说法"
OFFER_HUMAN = "需要为您转接人工客服吗"
DENY_ACK = "如果还有其他用电方面的问题"


def conversation() -> str:
    return f"quirks-{uuid.uuid4().hex[:12]}"


async def say(rasa_url: str, conv: str, text: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{rasa_url}/webhooks/rest/webhook",
                             json={"sender": conv, "message": text}) as response:
            assert response.status == 200
            return "\n".join(r.get("text") or "" for r in await response.json())


async def intent_of(rasa_url: str, text: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{rasa_url}/model/parse", json={"text": text}) as response:
            return (await response.json())["intent"]["name"]


async def test_digits_after_the_binding_lock_get_the_lock_message_again(rasa_url, backends_url):
    # Unknown 户号 count as wrong answers in the conversation only: no real account is locked.
    conv = conversation()
    assert "户号" in await say(rasa_url, conv, "绑定户号")
    unknown = await unknown_account(backends_url)
    answer = ""
    for _ in range(VerificationLimits().conversation.max_count):
        answer = await say(rasa_url, conv, unknown)
        if LOCKED in answer:
            break
    assert LOCKED in answer, answer
    for digits in ("1234", "5678"):
        again = await say(rasa_url, conv, digits)
        assert LOCKED in again and GOODBYE not in again, again


@pytest.mark.parametrize("text", ["<div></div>", "<br/>", "###", "!!!"])
async def test_markup_or_symbols_only_get_the_ordinary_fallback(rasa_url, text):
    answer = await say(rasa_url, conversation(), text)
    assert REPHRASE in answer and BOT_CHALLENGE not in answer, answer


async def test_a_vague_second_message_after_a_fallback_offers_a_human(rasa_url):
    conv = conversation()
    assert REPHRASE in await say(rasa_url, conv, "/nlu_fallback")
    answer = await say(rasa_url, conv, "嗯…就是那个")
    assert OFFER_HUMAN in answer and "请问还有其他可以帮您的吗" not in answer, answer
    assert "正在为您转接" in await say(rasa_url, conv, "对，转吧")


@pytest.mark.parametrize("text, intent", [("对，就是我", "affirm"), ("是的没错", "affirm"),
                                          ("不用了谢谢", "deny"), ("不需要了", "deny")])
async def test_short_confirmations_and_refusals_are_understood(rasa_url, text, intent):
    assert await intent_of(rasa_url, text) == intent


async def test_a_short_no_with_thanks_declines_the_offered_human(rasa_url):
    conv = conversation()
    await say(rasa_url, conv, "/nlu_fallback")
    assert OFFER_HUMAN in await say(rasa_url, conv, "/nlu_fallback")
    answer = await say(rasa_url, conv, "不用了谢谢")
    assert DENY_ACK in answer and "不客气" not in answer, answer


async def test_a_short_yes_to_anything_else_asks_what(rasa_url):
    conv = conversation()
    assert "还有其他可以帮您的吗" in await say(rasa_url, conv, "好的")
    assert "请问还需要办理什么" in await say(rasa_url, conv, "对，还有")


async def test_a_no_to_the_phone_on_file_asks_for_another_number(rasa_url):
    conv = conversation()
    await say(rasa_url, conv, "绑定户号")
    await say(rasa_url, conv, ENTERPRISE)
    assert "验证成功" in await say(rasa_url, conv, ENTERPRISE_PHONE[-4:])
    answer = await say(rasa_url, conv, "我要投诉，营业厅工作人员态度很差，爱理不理的")
    if "需要使用这个号码吗" not in answer:  # the form may first ask what it could not read
        answer = await say(rasa_url, conv, "服务态度")
    assert "需要使用这个号码吗" in answer, answer
    other = await say(rasa_url, conv, "不用了")
    assert "请输入您希望工作人员联系您的手机号码" in other and "没有提交" not in other, other
    done = await say(rasa_url, conv, "13912345678")
    assert "工单号" in done and "5678" in done, done
