"""Shared pieces of the broadcast engine tests: a Redis database of their own, the WeChat and
Aliyun SMS loopback fakes behind a real :class:`~channels.delivery.Deliverer` (built the way the
broadcast workers build theirs, :func:`channels.app.standalone_deliverer`), a pinned clock and a
small in-memory audience source implementing the sources' interface (plans, recipients)."""
from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from redis.asyncio import Redis

from channels.app import standalone_deliverer
from channels.broadcast.config import EngineConfig
from channels.broadcast.engine import Engine
from channels.config import GatewayConfig
from channels.quiet_hours import QuietHours
from fakes.aliyun_sms import FakeAliyunSms
from fakes.broadcast_fakes import sms_counts, wechat_counts  # noqa: F401 - for the tests
from fakes.wechat_api import FakeWeChatApi
from tests.channels.sms.conftest import SIGN, TEMPLATES, aliyun_templates
from tests.support.redis_db import BROADCAST_ENGINE_DB, redis_database

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 27, 15, 0, tzinfo=SH).timestamp()        # a Friday afternoon
NIGHT = datetime(2026, 11, 27, 23, 30, tzinfo=SH).timestamp()
MORNING = datetime(2026, 11, 28, 8, 0, tzinfo=SH).timestamp()
OUTAGE_PARAMS = {"area": "幸福小区", "start": "11月30日08:00", "end": "11月30日18:00",
                 "reason": "线路检修"}
WECHAT_TEMPLATE = {"outage_notice": {
    "template_id": "TPL-outage", "data": {"thing1": "${area}", "time2": "${start}",
                                          "time3": "${end}", "thing4": "${reason}"}}}


class Clock:
    """A settable clock (unix seconds) for the engine."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Plan:
    """The fields of ``channels.broadcast.sources.CampaignPlan`` the engine reads."""

    campaign_id: str = "outage:O-1:notice"
    kind: str = "outage"
    stage: str = "notice"
    notice_kind: str = "outage_notice"
    urgent: bool = False
    title: str = "幸福小区计划停电通知"
    subject: dict[str, str] = field(default_factory=lambda: {"outage_id": "O-1"})


@dataclass(frozen=True)
class Recipient:
    customer: str
    conversations: tuple[str, ...]
    phone: str | None = None
    params: dict[str, str] = field(default_factory=lambda: dict(OUTAGE_PARAMS))


class Source:
    """An audience in memory, served in pages like the real sources; counts the pages read."""

    def __init__(self, recipients: list[Recipient], plans: list[Plan] | None = None) -> None:
        self.audience = recipients
        self._plans = plans or [Plan()]
        self.pages = 0
        self.fail_after: int | None = None  # raise after this many recipients (a crash)

    async def plans(self, kind: str, *, outage_id: str | None = None,
                    due_within: int | None = None, now: datetime) -> list[Plan]:
        return [p for p in self._plans if p.kind == kind
                and (outage_id is None or p.subject.get("outage_id") == outage_id)]

    async def recipients(self, plan: Any, page_size: int = 500) -> AsyncIterator[Recipient]:
        for start in range(0, len(self.audience), page_size):
            self.pages += 1
            for n, recipient in enumerate(self.audience[start:start + page_size], start):
                if self.fail_after is not None and n >= self.fail_after:
                    raise ConnectionError("backend went away")
                yield recipient


def wechat_audience(n: int, start: int = 0) -> list[Recipient]:
    return [Recipient(f"{3100000000 + i}", (f"wechat:o{i:08d}",), f"1380000{i:04d}")
            for i in range(start, start + n)]


@pytest.fixture
def broadcast_redis_url(redis_url) -> str:
    return redis_database(redis_url, BROADCAST_ENGINE_DB)


@pytest.fixture
async def redis(broadcast_redis_url):
    client = Redis.from_url(broadcast_redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def fakes():
    wechat = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    sms = FakeAliyunSms(sign_names=(SIGN,), templates=aliyun_templates())
    await wechat.start()
    await sms.start()
    yield wechat, sms
    await sms.close()
    await wechat.close()


@pytest.fixture
def gateway_env(fakes, broadcast_redis_url, tmp_path, monkeypatch) -> dict[str, str]:
    """The variables of a deployment with WeChat and Aliyun SMS pointed at the fakes (also set
    in the process environment, for the CLI)."""
    wechat, sms = fakes
    sms_templates = tmp_path / "sms_templates.yml"
    sms_templates.write_text(yaml.safe_dump({"version": 1, "templates": TEMPLATES},
                                            allow_unicode=True), encoding="utf-8")
    wechat_templates = tmp_path / "wechat_templates.yml"
    wechat_templates.write_text(yaml.safe_dump({"version": 1, "templates": WECHAT_TEMPLATE},
                                               allow_unicode=True), encoding="utf-8")
    for name in [k for k in os.environ if k.startswith(("WECHAT_", "SMS_", "ALIYUN_SMS",
                                                        "TENCENT_SMS", "GATEWAY_", "DELIVERY_",
                                                        "BROADCAST_"))]:
        monkeypatch.delenv(name)
    env = {"REDIS_URL": broadcast_redis_url, "DELIVERY_QUIET_HOURS": "off",
           "DELIVERY_RATE_LIMITS": "off",
           "WECHAT_TOKEN": "tok" + secrets.token_hex(6), "WECHAT_APP_ID": wechat.app_id,
           "WECHAT_APP_SECRET": wechat.app_secret, "WECHAT_API_BASE_URL": wechat.base_url,
           "WECHAT_TEMPLATES_FILE": str(wechat_templates),
           "SMS_PROVIDER": "aliyun", "SMS_SIGN_NAME": SIGN, "SMS_TEMPLATES_FILE": str(sms_templates),
           "SMS_CALLBACK_TOKEN": secrets.token_hex(12), "SMS_QUIET_HOURS": "off",
           "SMS_PROACTIVE_LIMITS": "",
           "ALIYUN_SMS_ACCESS_KEY_ID": sms.access_key_id,
           "ALIYUN_SMS_ACCESS_KEY_SECRET": sms.access_key_secret, "ALIYUN_SMS_ENDPOINT": sms.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY)


@pytest.fixture
async def make_engine(gateway_env, clock):
    """``await make_engine(**engine_config_changes)``: a worker with its own Redis client and
    deliverer (like a separate worker process), quiet hours 21:00-08:00 on the pinned clock."""
    stacks: list[Any] = []

    async def make(config: GatewayConfig | None = None, consumer: str | None = None,
                   **changes: Any) -> Engine:
        gateway = config or GatewayConfig.from_env(gateway_env)
        client = Redis.from_url(gateway.redis_url)
        context = standalone_deliverer(gateway, client)
        deliverer = await context.__aenter__()
        stacks.append((context, client))
        engine_config = replace(EngineConfig(rates={}), **changes)
        return Engine(client, deliverer, engine_config,
                      QuietHours(GatewayConfig.from_env({}).delivery_quiet_hours, "Asia/Shanghai"),
                      notice_limits=dict(gateway.delivery_rate_limits), clock=clock,
                      consumer=consumer)

    yield make
    for context, client in stacks:
        await context.__aexit__(None, None, None)
        await client.aclose()
