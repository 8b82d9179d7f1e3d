"""Account binding through the trained model: the proof's fallback words are understood as
answers (not as 取消), and the page's unbind button payload unbinds. Marker ``e2e``."""
from __future__ import annotations

import aiohttp
import pytest

from backends.demo_accounts import COMMERCIAL, COMMERCIAL_PHONE
from tests.channels.webclient import WebClient, texts

pytestmark = pytest.mark.e2e

UNBIND_PAYLOAD = '/bind_account{"binding_option":"unbind"}'


@pytest.mark.parametrize("text", ["没收到验证码", "验证码一直没收到", "重新发送验证码",
                                  "用手机尾号验证吧"])
async def test_code_fallback_words_are_not_a_cancellation(rasa_url: str, text: str):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{rasa_url}/model/parse", json={"text": text}) as response:
            parsed = await response.json()
    assert parsed["intent"]["name"] != "deny", parsed["intent"]


async def test_the_unbind_button_payload_unbinds(gateway_url: str):
    web = await WebClient().connect(gateway_url)
    try:
        await web.session(None)
        assert "户号" in texts(await web.ask("绑定户号"))
        assert "后4位" in texts(await web.ask(COMMERCIAL))
        assert "验证成功" in texts(await web.ask(COMMERCIAL_PHONE[-4:]))
        answer = texts(await web.ask(UNBIND_PAYLOAD))
        assert f"已为您解除户号******{COMMERCIAL[-4:]}的绑定" in answer, answer
        assert "没有绑定户号" in texts(await web.ask(UNBIND_PAYLOAD))
    finally:
        await web.close()
