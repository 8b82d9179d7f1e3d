"""The consumer of the outbound requests stream on real Redis: requests become deliveries, the
result is recorded before the entry is acknowledged and deleted, malformed entries are dropped,
and entries a dead instance left pending are claimed by another."""
from __future__ import annotations

import json
import logging
import uuid

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from channels.messages import DeliveryResult
from channels.outbound_requests import RESULT_PREFIX, OutboundRequests
from tests.channels.delivery_support import MORNING, NIGHT, RecordingChannel

OUTAGE_PARAMS = {"area": "江宁区东山街道", "start": "09:00", "end": "17:00", "reason": "线路检修"}


@pytest.fixture
def stream() -> str:
    return f"pd:test:outbound:{uuid.uuid4().hex}"


@pytest.fixture
async def channel(redis_url):
    channel = RecordingChannel(redis_url, "sms")
    yield channel
    await channel.redis.aclose()


@pytest.fixture
def consumer(redis, make_deliverer, channel, stream):
    def make(name: str = "gw-1", claim_idle_seconds: float = 60.0) -> OutboundRequests:
        return OutboundRequests(redis, make_deliverer(channel), name, stream=stream, block_ms=50,
                                claim_idle_seconds=claim_idle_seconds, clock=lambda: 0.0)
    return make


def request(conversation_id: str = "sms:13812345678", kind: str = "verification_code",
            params: dict | None = None, urgent: str = "1", **extra: str) -> dict[str, str]:
    return {"conversation_id": conversation_id, "purpose": "notice", "kind": kind,
            "params": json.dumps(params if params is not None else {"code": "864213"}),
            "urgent": urgent, "requested_by": "action_send_verification_code", **extra}


async def result_of(redis: Redis, entry_id: bytes) -> dict[str, str]:
    raw = await redis.hgetall(RESULT_PREFIX + entry_id.decode())
    return {k.decode(): v.decode() for k, v in raw.items()}


async def settled(redis: Redis, stream: str) -> bool:
    """Nothing left in the stream and nothing pending in the group."""
    return await redis.xlen(stream) == 0 and (await redis.xpending(stream, "gateway"))["pending"] == 0


async def test_a_request_is_delivered_recorded_then_acknowledged(redis, consumer, channel, stream):
    entry = await redis.xadd(stream, request())
    assert await consumer().run_once() == 1
    assert await channel.sent() == ["verification_code"]
    assert channel.calls == [("13812345678", "notice")]
    result = await result_of(redis, entry)
    assert result == {"status": "sent", "reason": "", "when": "", "retry": "0",
                      "conversation_id": "sms:13812345678"}
    assert 0 < await redis.ttl(RESULT_PREFIX + entry.decode()) <= 86400
    assert await settled(redis, stream)


async def test_quiet_hours_hold_a_non_urgent_request(redis, consumer, channel, stream, clock):
    clock.now = NIGHT
    first = await redis.xadd(stream, request(kind="outage_notice", params=OUTAGE_PARAMS, urgent="0"))
    second = await redis.xadd(stream, request(urgent="1"))
    reader = consumer()
    assert await reader.run_once() == 2
    assert await result_of(redis, first) == {
        "status": "queued", "reason": "quiet_hours", "when": repr(MORNING), "retry": "0",
        "conversation_id": "sms:13812345678"}
    assert (await result_of(redis, second))["status"] == "sent"
    assert await channel.sent() == ["verification_code"]
    clock.now = MORNING
    assert await reader._deliverer.run_due() == 1
    assert await channel.sent() == ["verification_code", "outage_notice"]


@pytest.mark.parametrize("fields", [
    {"purpose": "notice", "kind": "x"},                                          # no conversation
    request(conversation_id="13812345678"),                                      # no channel prefix
    request(purpose="reply"),
    request(kind=""),
    {**request(), "params": "{not json"},
    {**request(), "params": json.dumps(["a"])},
    {**request(), "params": json.dumps({"code": {"nested": 1}})},
    request(urgent="yes"),
])
async def test_malformed_requests_are_dropped(redis, consumer, channel, stream, fields):
    before = REGISTRY.get_sample_value("powerdesk_gateway_outbound_requests_total",
                                       {"outcome": "malformed"}) or 0.0
    await redis.xadd(stream, fields)
    assert await consumer().run_once() == 1
    assert channel.calls == []
    assert await settled(redis, stream)
    assert REGISTRY.get_sample_value("powerdesk_gateway_outbound_requests_total",
                                     {"outcome": "malformed"}) == before + 1


async def test_an_entry_left_pending_by_a_dead_instance_is_claimed(redis, consumer, channel, stream):
    dead, alive = consumer("gw-dead", claim_idle_seconds=0), consumer("gw-alive", claim_idle_seconds=0)
    await dead._ensure_group()
    entry = await redis.xadd(stream, request())
    # The dead instance read the entry and died before delivering it.
    assert await redis.xreadgroup("gateway", "gw-dead", {stream: ">"}, count=10)
    assert channel.calls == []
    assert await alive.run_once() == 1
    assert channel.calls == [("13812345678", "notice")]
    assert (await result_of(redis, entry))["status"] == "sent"
    assert await settled(redis, stream)


async def test_a_retryable_failure_is_scheduled_for_later(redis, consumer, channel, stream):
    channel.answer = DeliveryResult("failed", "unavailable", retry=True)
    reader = consumer()
    entry = await redis.xadd(stream, request())
    assert await reader.run_once() == 1
    assert await result_of(redis, entry) == {
        "status": "queued", "reason": "retry", "when": repr(30.0), "retry": "0",
        "conversation_id": "sms:13812345678"}
    assert await settled(redis, stream)
    assert await redis.zcard(reader._deliverer._schedule_key) == 1


async def test_an_entry_deleted_while_pending_does_not_block_the_group(redis, consumer, channel,
                                                                        stream):
    dead, alive = consumer("gw-dead", claim_idle_seconds=0), consumer("gw-alive", claim_idle_seconds=0)
    await dead._ensure_group()
    gone = await redis.xadd(stream, request())
    assert await redis.xreadgroup("gateway", "gw-dead", {stream: ">"}, count=10)
    await redis.xdel(stream, gone)  # e.g. trimmed by an operator
    assert await alive.run_once() == 1  # acknowledged, nothing delivered
    assert channel.calls == []
    assert await settled(redis, stream)
    await redis.xadd(stream, request())
    assert await alive.run_once() == 1
    assert channel.calls == [("13812345678", "notice")]


async def test_a_consumer_leaves_the_group_at_shutdown_unless_it_holds_entries(
        redis, consumer, stream):
    idle, busy = consumer("gw-idle"), consumer("gw-busy")
    await idle._ensure_group()
    await redis.xadd(stream, request())
    assert await redis.xreadgroup("gateway", "gw-busy", {stream: ">"}, count=10)  # holds one
    await redis.xreadgroup("gateway", "gw-idle", {stream: ">"}, count=10)
    await idle.leave()
    await busy.leave()
    names = {c["name"] for c in await redis.xinfo_consumers(stream, "gateway")}
    assert names == {b"gw-busy"}


async def test_the_log_line_masks_the_number_and_the_asking_session(redis, consumer, stream,
                                                                     caplog):
    session = "f" * 32
    await redis.xadd(stream, request(requested_by=f"web:{session}"))
    with caplog.at_level(logging.INFO, logger="channels.outbound_requests"):
        assert await consumer().run_once() == 1
    (line,) = [r.getMessage() for r in caplog.records if r.name == "channels.outbound_requests"]
    assert session not in line and "13812345678" not in line and "864213" not in line
    assert "verification_code" in line and "*******5678" in line
