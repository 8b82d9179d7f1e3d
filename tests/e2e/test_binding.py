"""Account binding through the trained model: the proof's fallback words are understood as
answers (not as 取消), the page's unbind button payload unbinds, and with SMS configured the
code and its fallback work through a real Rasa server. Marker ``e2e``."""
from __future__ import annotations

import json
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

from backends.demo_accounts import COMMERCIAL, COMMERCIAL_PHONE
from integrations.customer_store import OUTBOUND_STREAM
from scripts.stack import Stack, free_port
from fakes.webclient import WebClient, texts

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


@pytest.fixture(scope="session")
def sms_stack(tmp_path_factory, rasa_model, backend_client_env: dict[str, str]):
    """The SMS-configured product on a Redis of its own (the session's gateway consumes the
    outbound stream of the shared one): ``(Rasa URL, Redis URL)``."""
    base = tmp_path_factory.mktemp("sms-stack")
    stack = Stack(run_dir=base / "run", log_dir=base / "logs")
    try:
        redis_url = stack.start_embedded_redis(free_port())
        actions = stack.start_action_server(free_port(), redis_url, backend_client_env,
                                            extra_env={"VERIFICATION_SMS": "on"})
        yield stack.start_rasa(free_port(), rasa_model, redis_url, actions), redis_url
    finally:
        stack.stop()


async def _say(rasa_url: str, conv: str, text: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{rasa_url}/webhooks/rest/webhook",
                             json={"sender": conv, "message": text}) as response:
            assert response.status == 200
            return "\n".join(r.get("text") or "" for r in await response.json())


async def _code_sent_to(redis_url: str, conv: str) -> str:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await client.xrange(OUTBOUND_STREAM)
    finally:
        await client.aclose()
    requests = [f for _, f in entries if f.get("requested_by") == conv]
    assert requests and requests[-1]["conversation_id"] == f"sms:{COMMERCIAL_PHONE}"
    return json.loads(requests[-1]["params"])["code"]


async def test_binding_with_a_code_through_rasa(sms_stack):
    sms_rasa_url, redis_url = sms_stack
    conv = f"web:e2e-code-{uuid.uuid4().hex}"
    assert "短信验证码" in await _say(sms_rasa_url, conv, "绑定户号")
    asked = await _say(sms_rasa_url, conv, COMMERCIAL)
    assert "验证码已发送" in asked and COMMERCIAL_PHONE[-4:] not in asked.replace(COMMERCIAL[-4:], "")
    code = await _code_sent_to(redis_url, conv)
    answer = await _say(sms_rasa_url, conv, code)
    assert "验证成功" in answer, answer


async def test_no_code_received_then_the_phone_last4_through_rasa(sms_stack):
    sms_rasa_url, _ = sms_stack
    conv = f"web:e2e-code-{uuid.uuid4().hex}"
    await _say(sms_rasa_url, conv, "绑定户号")
    assert "验证码已发送" in await _say(sms_rasa_url, conv, COMMERCIAL)
    assert "后4位" in await _say(sms_rasa_url, conv, "没收到验证码")
    answer = await _say(sms_rasa_url, conv, COMMERCIAL_PHONE[-4:])
    assert "验证成功" in answer, answer
