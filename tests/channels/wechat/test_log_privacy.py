"""No WeChat openid in the gateway's logs: the real gateway process (python -m channels, at DEBUG)
on the session's Redis, the fake Rasa and the WeChat API fake. A follower subscribes, chats, gets
the busy reply while Rasa fails, cannot be reached for a while, and unsubscribes; the gateway's
log file then names the follower only as ``…`` and the openid's last 4 characters."""
from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiohttp

from fakes.rasa_rest import FakeRasaRest
from fakes.wechat_api import FakeWeChatApi, WeChatPusher
from scripts.stack import Stack, free_port

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


async def until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_wechat_round_trip_logs_no_openid(tmp_path: Path, redis_url: str):
    api, rasa = FakeWeChatApi(app_id="wx" + secrets.token_hex(8)), FakeRasaRest()
    await api.start()
    await rasa.start()
    openid = "o" + secrets.token_urlsafe(21)[:23] + "1234"  # 28 characters, as WeChat's
    token = "tok" + secrets.token_hex(6)
    stack = Stack(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    try:
        gateway = await asyncio.to_thread(
            stack.start_gateway, "127.0.0.1", free_port(), redis_url, rasa.url,
            {"WECHAT_TOKEN": token, "WECHAT_APP_ID": api.app_id, "WECHAT_APP_SECRET": api.app_secret,
             "WECHAT_AES_KEY": AES_KEY, "WECHAT_ENCRYPT_MODE": "safe", "WECHAT_API_BASE_URL": api.base_url,
             "GATEWAY_LOG_LEVEL": "DEBUG", "RASA_TIMEOUT_SECONDS": "3"})
        pusher = WeChatPusher(gateway, token, api.app_id, AES_KEY, "safe")
        async with aiohttp.ClientSession() as http:
            assert (await pusher.post(http, pusher.event_fields(openid, "subscribe")))[0] == 200
            assert (await pusher.post(http, pusher.text_fields(openid, "你好")))[0] == 200
            await until(lambda: "收到：你好" in api.texts_to(openid))
            answered = len(api.texts_to(openid))
            rasa.fail_status = 500  # Rasa fails: the busy reply, and a warning naming the follower
            assert (await pusher.post(http, pusher.text_fields(openid, "查电费")))[0] == 200
            await until(lambda: len(api.texts_to(openid)) > answered)
            rasa.fail_status = None
            api.refuse_user(openid, 45015)  # the follower cannot be reached: the answer fails
            assert (await pusher.post(http, pusher.text_fields(openid, "还在吗")))[0] == 200
            await until(lambda: any(path.endswith("custom/send") and code == 45015
                                    for path, code in api.calls))
            assert (await pusher.post(http, pusher.event_fields(openid, "unsubscribe")))[0] == 200
            await asyncio.sleep(1.0)  # the last lines are written
    finally:
        stack.stop()
        await api.close()
        await rasa.close()

    logged = (tmp_path / "logs" / "gateway.log").read_text(errors="replace")
    assert "wechat user unsubscribed" in logged and f"wechat:…{openid[-4:]}" in logged, logged[-3000:]
    assert openid not in logged and openid[:12] not in logged, [
        line for line in logged.splitlines() if openid[:12] in line]
