"""The broadcast scheduler as ``make run`` starts it (scripts.stack): a process of its own that
finishes an unfinished campaign found in Redis and stops cleanly on SIGTERM."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from channels.broadcast.campaigns import Campaigns, encode_member
from scripts.stack import Stack, free_port
from tests.channels.broadcast.engine_support import Plan


async def seed(redis_url: str, sessions: list[str]) -> None:
    redis = Redis.from_url(redis_url)
    try:
        campaigns = Campaigns(redis)
        await campaigns.create(Plan(urgent=True))
        await campaigns.add(Plan().campaign_id, [
            (f"31000000{i:02d}", encode_member(f"31000000{i:02d}", (f"web:{sid}",), None,
                                               {"area": "幸福小区"}), "")
            for i, sid in enumerate(sessions)])
        await campaigns.planned(Plan().campaign_id)
    finally:
        await redis.aclose()


async def state(redis_url: str) -> tuple[str, int]:
    redis = Redis.from_url(redis_url)
    try:
        campaigns = Campaigns(redis)
        meta = await campaigns.meta(Plan().campaign_id) or {}
        return meta.get("state", ""), (await campaigns.counters(Plan().campaign_id)).get("c:web:sent")
    finally:
        await redis.aclose()


def test_the_scheduler_process_finishes_unfinished_campaigns_and_stops_on_sigterm(tmp_path: Path):
    stack = Stack(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    try:
        redis_url = stack.start_embedded_redis(free_port())
        sessions = [f"{'a' * 20}{i:02d}" for i in range(5)]
        asyncio.run(seed(redis_url, sessions))
        dead_backends = f"http://127.0.0.1:{free_port()}"
        process = stack.start_broadcast_scheduler(
            redis_url, {name: f"{dead_backends}/{name.split('_')[0].lower()}" for name in
                        ("BILLING_API_URL", "OUTAGE_API_URL", "QUEUE_API_URL", "TICKETS_API_URL",
                         "APPLICATIONS_API_URL")},
            {"BROADCAST_SCHEDULE": "outage=off", "BROADCAST_SCHEDULER_TICK_SECONDS": "0.2",
             "DELIVERY_RATE_LIMITS": "off", "WECHAT_TOKEN": "", "SMS_PROVIDER": ""})
        deadline = time.monotonic() + 30
        while asyncio.run(state(redis_url)) != ("done", 5):
            assert process.alive(), process.log_tail()
            assert time.monotonic() < deadline, process.log_tail()
            time.sleep(0.2)
        process.stop()
        assert process.popen.returncode == 0, process.log_tail()
        assert "broadcast scheduler" in process.log_tail() and "stopped" in process.log_tail()
    finally:
        stack.stop()
