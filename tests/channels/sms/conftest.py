"""Fixtures of the SMS channel tests: real Redis, loopback provider fakes, a settable clock, and
``make_gateway``: the real gateway app (create_app) with the SMS channel on loopback."""
from __future__ import annotations

import json
import os
import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
import yaml
from aiohttp.test_utils import TestServer

from channels.sms import SMS_RUNTIME
from fakes.rasa_rest import FakeRasaRest

from fakes.aliyun_sms import FakeAliyunSms
from fakes.tencent_sms import FakeTencentSms

TEMPLATES = {
    "generic_reply": {"text": "${content}", "params": ["content"], "max_param_length": 35,
                      "aliyun": "SMS_900000001", "tencent": "900001"},
    "fallback": {"text": "您好，短信暂不能办理该业务，请使用网上国网App、微信公众号或拨打95598咨询。",
                 "params": [], "aliyun": "SMS_900000002", "tencent": "900002"},
    "optout_confirm": {"text": "您已退订通知短信，回复“订阅”可恢复。", "params": [],
                       "aliyun": "SMS_900000003", "tencent": "900003"},
    "optin_confirm": {"text": "您已恢复接收通知短信，回复TD退订。", "params": [],
                      "aliyun": "SMS_900000004", "tencent": "900004"},
    "bill_summary": {"text": "您户号${account}的${month}电费${amount}元，请于${due_date}前缴纳。",
                     "params": ["account", "month", "amount", "due_date"],
                     "aliyun": "SMS_900000005", "tencent": "900005"},
    "outage_notice": {"text": "${area}将于${start}至${end}停电，原因：${reason}。",
                      "params": ["area", "start", "end", "reason"],
                      "aliyun": "SMS_900000006", "tencent": "900006"},
    "verification_code": {"text": "您的验证码为${code}，${minutes}分钟内有效，请勿告知他人。",
                          "params": ["code", "minutes"],
                          "aliyun": "SMS_900000007", "tencent": "900007"},
}
SIGN = "国网供电"


def aliyun_templates() -> dict[str, tuple[str, ...]]:
    return {t["aliyun"]: tuple(t["params"]) for t in TEMPLATES.values()}


def tencent_templates() -> dict[str, int]:
    return {t["tencent"]: len(t["params"]) for t in TEMPLATES.values()}


@pytest.fixture
def templates_file(tmp_path) -> Path:
    path = tmp_path / "sms_templates.yml"
    path.write_text(yaml.safe_dump({"version": 1, "templates": TEMPLATES}, allow_unicode=True),
                    encoding="utf-8")
    return path


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def phone() -> str:
    """A fresh mobile number per test, so tests sharing the session's Redis never collide."""
    return f"1{random.choice('3456789')}{random.randrange(10**9):09d}"


@pytest.fixture
async def aliyun_fake():
    fake = FakeAliyunSms(sign_names=(SIGN,), templates=aliyun_templates())
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def tencent_fake():
    fake = FakeTencentSms(sign_names=(SIGN,), templates=tencent_templates())
    await fake.start()
    yield fake
    await fake.close()


class Clock:
    """A settable clock (unix seconds) injected where the code reads the time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Gateway:
    urls: list[str]
    apps: list[Any]
    token: str
    fake: Any
    rasa: FakeRasaRest
    session: aiohttp.ClientSession
    servers: list[TestServer] = field(default_factory=list)

    def runtime(self, index: int = 0):
        return self.apps[index][SMS_RUNTIME]

    async def post(self, path: str, body: Any, index: int = 0, token: str | None = None,
                   raw: bytes | None = None) -> tuple[int, Any]:
        url = f"{self.urls[index]}{path}?token={self.token if token is None else token}"
        data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
        async with self.session.post(url, data=data,
                                     headers={"Content-Type": "application/json"}) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def settle(self) -> None:
        for app in self.apps:
            runtime = app[SMS_RUNTIME]
            if runtime.webhooks is not None:
                await runtime.webhooks.drain()

    def texts(self, phone: str) -> list[str]:
        """What the provider fake delivered to ``phone``, as the customer reads it."""
        out = []
        for sent in self.fake.sent:
            if sent["phone"] != phone:
                continue
            params = sent["params"]
            out.append("".join(params.values()) if isinstance(params, dict) else "".join(params)
                       or sent["template"])
        return out


def sms_env(provider: str, fake, templates_file, redis_url, rasa_url, token, **extra) -> dict:
    env = {"REDIS_URL": redis_url, "RASA_URL": rasa_url, "SMS_PROVIDER": provider,
           "SMS_SIGN_NAME": SIGN, "SMS_TEMPLATES_FILE": str(templates_file),
           "SMS_CALLBACK_TOKEN": token, "SMS_QUIET_HOURS": "off"}
    if provider == "aliyun":
        env.update(ALIYUN_SMS_ACCESS_KEY_ID=fake.access_key_id,
                   ALIYUN_SMS_ACCESS_KEY_SECRET=fake.access_key_secret, ALIYUN_SMS_ENDPOINT=fake.url)
    else:
        env.update(TENCENT_SMS_SECRET_ID=fake.secret_id, TENCENT_SMS_SECRET_KEY=fake.secret_key,
                   TENCENT_SMS_SDK_APP_ID=fake.sdk_app_id, TENCENT_SMS_ENDPOINT=fake.url)
    env.update(extra)
    return env


@pytest.fixture
async def make_gateway(redis_url, rasa_fake, templates_file, aliyun_fake, tencent_fake, monkeypatch):
    """``await make_gateway("aliyun", count=1, **env)`` → Gateway built by create_app."""
    from channels.app import create_app
    from channels.config import GatewayConfig

    created: list[Gateway] = []
    rasa_url = rasa_fake.url

    async def make(provider: str = "aliyun", count: int = 1, **extra: str) -> Gateway:
        fake = aliyun_fake if provider == "aliyun" else tencent_fake
        token = secrets.token_hex(8)
        for key in [k for k in os.environ if k.startswith(("SMS_", "ALIYUN_SMS", "TENCENT_SMS"))]:
            monkeypatch.delenv(key)
        for key, value in sms_env(provider, fake, templates_file, redis_url, rasa_url, token,
                                  **extra).items():
            monkeypatch.setenv(key, value)
        servers, apps = [], []
        for _ in range(count):
            app = create_app(GatewayConfig.from_env())
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            servers.append(server)
            apps.append(app)
        gateway = Gateway([str(s.make_url("")).rstrip("/") for s in servers], apps, token, fake,
                          rasa_fake, aiohttp.ClientSession(), servers)
        created.append(gateway)
        return gateway

    yield make
    for gateway in created:
        await gateway.session.close()
        for server in gateway.servers:
            await server.close()  # runs the SMS lifespan's shutdown: worker stopped, tasks drained
