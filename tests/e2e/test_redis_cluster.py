"""The product on a real 3-master Redis Cluster (Debian's redis-server, started on loopback by the
``redis_cluster_url`` fixture): the gateway, the action server and Rasa (tracker store and lock
store) all get ``REDIS_URL=redis+cluster://...``. A web conversation binds an account and asks
for its bill, a signed WeChat push is answered through the WeChat API fake, and a customer's SMS
is answered through the SMS outbox and the Aliyun fake, whose delivery report then reaches the
message; then the state each part keeps is found on the cluster, spread over its masters. Marker
``e2e``."""
from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from backends.demo_accounts import COMMERCIAL, COMMERCIAL_PHONE
from fakes.aliyun_sms import FakeAliyunSms, report_items, up_item
from fakes.webclient import WebClient, texts
from fakes.wechat_api import FakeWeChatApi, WeChatPusher
from integrations.redis_url import sync_client
from scripts.stack import Stack, free_port
from tests.channels.sms.conftest import SIGN, TEMPLATES, aliyun_templates

pytestmark = pytest.mark.e2e

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


async def until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


def log_tails(stack: Stack) -> str:
    return "\n".join(f"--- {p.name}\n{p.log_tail(25)}" for p in stack.processes)


async def test_web_binding_and_a_wechat_message_on_a_redis_cluster(
        tmp_path: Path, rasa_model: Path, backend_client_env: dict[str, str], redis_cluster_url: str):
    api = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    await api.start()
    sms = FakeAliyunSms(sign_names=(SIGN,), templates=aliyun_templates())
    await sms.start()
    templates = tmp_path / "sms_templates.yml"
    templates.write_text(yaml.safe_dump({"version": 1, "templates": TEMPLATES}, allow_unicode=True),
                         encoding="utf-8")
    token, sms_token = "tok" + secrets.token_hex(6), secrets.token_hex(8)
    stack = Stack(run_dir=tmp_path / "run", log_dir=tmp_path / "logs", rasa_ready_seconds=900)  # a busy machine
    try:
        actions = await asyncio.to_thread(stack.start_action_server, free_port(), redis_cluster_url,
                                          backend_client_env)
        rasa = await asyncio.to_thread(stack.start_rasa, free_port(), rasa_model, redis_cluster_url, actions)
        gateway = await asyncio.to_thread(
            stack.start_gateway, "127.0.0.1", free_port(), redis_cluster_url, rasa,
            {"WECHAT_TOKEN": token, "WECHAT_APP_ID": api.app_id, "WECHAT_APP_SECRET": api.app_secret,
             "WECHAT_AES_KEY": AES_KEY, "WECHAT_ENCRYPT_MODE": "safe", "WECHAT_API_BASE_URL": api.base_url,
             "HANDOFF_HOURS": "always",
             "SMS_PROVIDER": "aliyun", "SMS_SIGN_NAME": SIGN, "SMS_TEMPLATES_FILE": str(templates),
             "SMS_CALLBACK_TOKEN": sms_token, "SMS_QUIET_HOURS": "off", "SMS_MAX_PARTS": "5",
             "ALIYUN_SMS_ACCESS_KEY_ID": sms.access_key_id,
             "ALIYUN_SMS_ACCESS_KEY_SECRET": sms.access_key_secret, "ALIYUN_SMS_ENDPOINT": sms.url})

        # Web chat: the bill asks for a binding, the binding answers the bill, the next ask is direct.
        web = await WebClient().connect(gateway)
        try:
            session = await web.session(None)
            assert "户号" in texts(await web.ask("查电费"))
            assert "后4位" in texts(await web.ask(COMMERCIAL))
            answer = texts(await web.ask(COMMERCIAL_PHONE[-4:]))
            assert "验证成功" in answer and "电费账单如下" in answer, answer
            answer = texts(await web.ask("查电费"))
            assert "电费账单如下" in answer and COMMERCIAL[-4:] in answer, answer
        finally:
            await web.close()

        # WeChat: a signed, encrypted push is acknowledged and answered by the customer-service API.
        openid = "oCluster" + secrets.token_hex(8)
        pusher = WeChatPusher(gateway, token, api.app_id, AES_KEY, "safe")
        async with aiohttp.ClientSession() as http:
            status, _ = await pusher.post(http, pusher.text_fields(openid, "查电费"))
        assert status == 200
        await until(lambda: api.texts_to(openid))
        assert "户号" in "\n".join(api.texts_to(openid))

        # SMS: the customer's SMS is answered through the outbox ({sms} keys) and the Aliyun fake,
        # and the provider's delivery report marks the answer delivered.
        phone = "139" + f"{secrets.randbelow(10 ** 8):08d}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{gateway}/sms/aliyun/up?token={sms_token}",
                                 json=[up_item(phone, "查电费", 1)]) as response:
                assert response.status == 200
            await until(lambda: [s for s in sms.sent if s["phone"] == phone])
            await asyncio.sleep(1.0)  # every part of the answer
            answer = [s for s in sms.sent if s["phone"] == phone]
            assert "户号" in "".join(s["params"]["content"] for s in answer), answer
            async with http.post(f"{gateway}/sms/aliyun/report?token={sms_token}",
                                 json=report_items(answer)) as response:
                assert response.status == 200
    except Exception:
        print(log_tails(stack))  # shown with the failure
        raise
    finally:
        stack.stop()
        await api.close()
        await sms.close()

    # The state is on the cluster: both trackers (hash-tagged), the binding, no lock left behind.
    red = sync_client(redis_cluster_url, decode_responses=True)
    try:
        web_id, wechat_id = f"web:{session}", f"wechat:{openid}"
        for conversation in (web_id, wechat_id):
            # The ids have no braces: the hash tag is the id itself (bot/tracker_store.hash_tag).
            meta = red.hgetall(f"pdrasa:trk:{{{conversation}}}:meta")
            assert meta.get("id") == conversation and int(meta["n"]) > 0, (conversation, meta)
            assert not red.exists(f"pdrasa:lock:{{{conversation}}}")
        assert red.get(f"pd:binding:{web_id}") == COMMERCIAL
        for sent in answer:
            assert red.hget(f"pd:{{sms}}:msg:{sent['out_id']}", "state") == "delivered"
        sizes = [red.get_redis_connection(node).dbsize() for node in red.get_primaries()]
        assert len(sizes) == 3 and sum(1 for n in sizes if n > 0) >= 2, sizes
    finally:
        red.close()
