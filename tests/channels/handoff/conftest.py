"""A private Redis for the hand-off tests (their queues, events and day counters are global
keys), flushed before each test, and a settable clock pinned to a working-day afternoon."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from channels.embedded_redis import EmbeddedRedis
from tests.channels.delivery_support import Clock

SH = ZoneInfo("Asia/Shanghai")
# Friday 2026-11-27 15:00 in Shanghai: a working day, within business hours.
FRIDAY_AFTERNOON = datetime(2026, 11, 27, 15, 0, tzinfo=SH).timestamp()


@pytest.fixture(scope="session")
def handoff_redis_url(tmp_path_factory) -> str:
    server = EmbeddedRedis(tmp_path_factory.mktemp("handoff-redis"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
async def hredis(handoff_redis_url) -> AsyncIterator[Redis]:
    client = Redis.from_url(handoff_redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def hclock() -> Clock:
    return Clock(FRIDAY_AFTERNOON)
