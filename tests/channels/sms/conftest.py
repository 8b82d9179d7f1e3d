"""Fixtures of the SMS channel tests: real Redis, loopback provider fakes, a settable clock."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import yaml

from tests.fakes.aliyun_sms import FakeAliyunSms
from tests.fakes.tencent_sms import FakeTencentSms

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
