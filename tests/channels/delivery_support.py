"""Shared pieces of the delivery tests: a pinned clock, a recording channel and a factory of
delivery facades (each with its own Redis client, like separate gateway instances)."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from channels.delivery import Deliverer
from channels.messages import DeliveryResult, Notice
from channels.optout import OptOutStore
from channels.quiet_hours import QuietHours

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 28, 15, 0, tzinfo=SH).timestamp()
NIGHT = datetime(2026, 11, 28, 23, 30, tzinfo=SH).timestamp()
MORNING = datetime(2026, 11, 29, 8, 0, tzinfo=SH).timestamp()
QUIET = (time(21, 0), time(8, 0))


class Clock:
    """A settable clock (unix seconds), shared by the facade and the adapters under test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingChannel:
    """A channel whose transport is a Redis list (shared by every instance of a test); it yields
    between the parts of a send, so deliveries that were not serialised would interleave."""

    def __init__(self, redis_url: str, name: str = "rec") -> None:
        self.name = name
        self.redis = Redis.from_url(redis_url)
        self.key = f"pd:test:rec:{uuid.uuid4().hex}"
        self.calls: list[tuple[str, str]] = []
        self.answer: DeliveryResult | Exception | None = None
        self.delay = 0.0

    async def send(self, user_id, content, purpose) -> DeliveryResult:
        self.calls.append((user_id, purpose))
        if isinstance(self.answer, Exception):
            raise self.answer
        await asyncio.sleep(self.delay)
        if self.answer is not None and self.answer.status != "sent":
            return self.answer
        parts = [content.kind] if isinstance(content, Notice) else [r.text for r in content]
        for part in parts:
            await self.redis.rpush(self.key, part)
            await asyncio.sleep(0.002)
        return self.answer or DeliveryResult("sent")

    async def sent(self) -> list[str]:
        return [raw.decode() for raw in await self.redis.lrange(self.key, 0, -1)]


@pytest.fixture
async def recording(redis_url):
    channels: list[RecordingChannel] = []

    def make(name: str = "rec") -> RecordingChannel:
        channel = RecordingChannel(redis_url, name)
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        await channel.redis.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY)


@pytest.fixture
async def make_deliverer(redis_url, clock):
    """``make_deliverer(*adapters, rate_limits=…)``: one gateway instance's facade, with its own
    Redis client; every instance of a test shares the schedule and the opt-out store."""
    clients: list[Redis] = []
    schedule_key = f"pd:test:delivery:scheduled:{uuid.uuid4().hex}"
    optout_key = f"pd:test:optout:{uuid.uuid4().hex}"

    def make(*adapters: Any, rate_limits=None, quiet=QUIET, lock_wait: float = 5.0,
             send_timeout: float = 5.0) -> Deliverer:
        client = Redis.from_url(redis_url)
        clients.append(client)
        deliverer = Deliverer(client, OptOutStore(client, optout_key),
                              QuietHours(quiet, "Asia/Shanghai"), rate_limits, clock=clock,
                              lock_wait_seconds=lock_wait, send_timeout_seconds=send_timeout,
                              schedule_key=schedule_key)
        for adapter in adapters:
            deliverer.register(adapter)
        return deliverer

    yield make
    for client in clients:
        await client.aclose()
