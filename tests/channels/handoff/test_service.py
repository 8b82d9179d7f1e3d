"""HandoffService with a pinned clock: business hours (working-day calendar) and the callback
ticket in the real tickets backend, the unclaimed timeout firing once across two instances,
回电 instead of waiting, ratings in every written form, and the request stream consumer."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from redis.asyncio import Redis

from channels.handoff.config import HandoffConfig
from channels.handoff.hours import BusinessHours
from channels.handoff.requests import STREAM, HandoffRequests
from channels.handoff.service import (AFTER_HOURS_TEXT, THANKS_TEXT, UNCLAIMED_TEXT, WAITING_TEXT,
                                      HandoffService, parse_rating, valid_queue)
from channels.handoff.store import HandoffStore
from channels.messages import DeliveryResult, Message
from channels.redis_text import redis_text
from channels.rasa_client import RasaClient
from fakes.rasa_rest import FakeRasaRest
from tests.channels.handoff.conftest import SH

FRIDAY_EVENING = dt.datetime(2026, 11, 27, 20, 0, tzinfo=SH).timestamp()
SATURDAY = dt.datetime(2026, 11, 28, 15, 0, tzinfo=SH).timestamp()
NATIONAL_DAY = dt.datetime(2026, 10, 1, 10, 0, tzinfo=SH).timestamp()
MAKE_UP_SATURDAY = dt.datetime(2026, 10, 10, 10, 0, tzinfo=SH).timestamp()  # 调休: a working day


class Outbox:
    """Records what the service delivers, as the customer would read it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def __call__(self, cid, content, purpose) -> DeliveryResult:
        self.sent.extend((cid, reply.text, purpose) for reply in content)
        return DeliveryResult("sent")

    def texts(self, cid: str) -> list[str]:
        return [text for to, text, _ in self.sent if to == cid]


@pytest.fixture
async def rasa():
    fake = FakeRasaRest()
    await fake.start()
    client = RasaClient(fake.url, 5)
    await client.start()
    yield fake, client
    await client.close()
    await fake.close()


def make_service(redis, clock, outbox, rasa=None, tickets=None, **config) -> HandoffService:
    settings = HandoffConfig(**{"hours": BusinessHours.parse("08:00-20:00"), **config})
    return HandoffService(HandoffStore(redis, clock=clock), outbox, rasa, settings, tickets)


def test_business_hours_follow_the_working_day_calendar(hclock):
    hours = BusinessHours.parse("08:00-20:00")
    assert hours.is_open(hclock.now)                        # Friday 15:00
    assert not hours.is_open(FRIDAY_EVENING)                # 20:00 is closed
    assert not hours.is_open(SATURDAY)
    assert not hours.is_open(NATIONAL_DAY)
    assert hours.is_open(MAKE_UP_SATURDAY)
    assert hours.describe_next(FRIDAY_EVENING) == "11月30日08:00"
    assert hours.describe_next(NATIONAL_DAY) == "10月8日08:00"
    assert hours.describe_next(dt.datetime(2026, 11, 30, 7, 0, tzinfo=SH).timestamp()) == "今天08:00"
    assert BusinessHours.parse("09:00-17:30,daily").is_open(SATURDAY)
    assert BusinessHours.parse("always").is_open(NATIONAL_DAY)
    assert hours.describe() == "工作日08:00-20:00"
    for bad in ("8-20", "20:00-08:00", "08:00-20:00,weekends", "25:00-26:00"):
        with pytest.raises(ValueError, match="HANDOFF_HOURS"):
            BusinessHours.parse(bad)


async def test_outside_business_hours_a_callback_ticket_instead(hredis, hclock, backends, rasa):
    fake, client = rasa
    hclock.now = SATURDAY
    outbox = Outbox()
    service = make_service(hredis, hclock, outbox, client, backends.clients.tickets)
    cid = "sms:13912345678"
    result = await service.open(cid, queue="general", reason="customer: 转人工", account="3201234567")
    assert result["state"] == "after_hours" and result["ticket"].startswith("HF")
    (said,) = outbox.texts(cid)
    assert said.startswith(AFTER_HOURS_TEXT.format(hours="工作日08:00-20:00"))
    assert result["ticket"] in said and "11月30日08:00" in said and "95598" in said
    ticket = await backends.clients.tickets.get_ticket(result["ticket"])
    assert (ticket.kind, ticket.conversation_id, ticket.account_number) == ("callback", cid, "3201234567")
    assert await service.store.get(cid) is None  # no hand-off opened, Rasa not paused
    assert fake.tracker_events[cid] == []

    # a customer already waiting when the hours end is not told twice nor ticketed again
    hclock.now = dt.datetime(2026, 11, 27, 19, 59, tzinfo=SH).timestamp()
    await service.open("web:waiting", queue="general", reason="")
    hclock.now = FRIDAY_EVENING
    again = await service.open("web:waiting", queue="general", reason="")
    assert again["state"] == "waiting" and not again["new"]
    assert outbox.texts("web:waiting") == [WAITING_TEXT]


async def test_tickets_backend_down_still_tells_the_hours(hredis, hclock):
    hclock.now = NATIONAL_DAY
    outbox = Outbox()
    service = make_service(hredis, hclock, outbox)
    result = await service.open("web:abc", queue="vip", reason="")
    assert result == {"state": "after_hours", "ticket": ""}
    assert "请在10月8日08:00后再联系人工客服" in outbox.texts("web:abc")[0]


async def test_unclaimed_reminder_fires_once_across_instances_then_callback(
        hredis, hclock, handoff_redis_url, backends, rasa):
    fake, client = rasa
    outbox = Outbox()
    other = Redis.from_url(handoff_redis_url, decode_responses=True)
    try:
        one = make_service(hredis, hclock, outbox, client, backends.clients.tickets, unclaimed_minutes=5)
        two = make_service(other, hclock, outbox, client, backends.clients.tickets, unclaimed_minutes=5)
        cid = "wechat:o" + "x" * 27
        await one.open(cid, queue="general", reason="customer: 转人工")
        hclock.now += 1
        await two.open("web:later", queue="general", reason="")
        assert outbox.texts(cid) == [WAITING_TEXT]
        assert outbox.texts("web:later") == [WAITING_TEXT + "您前面还有1位客户在等待。"]
        hclock.now += 4 * 60
        assert await one.remind_unclaimed() + await two.remind_unclaimed() == 0
        hclock.now += 60
        assert [await one.remind_unclaimed(), await two.remind_unclaimed()] == [2, 0]
        hclock.now += 600
        assert await two.remind_unclaimed() == 0
        assert outbox.texts(cid)[1:] == [UNCLAIMED_TEXT.format(minutes=5)]

        replies = await two.divert(Message("wechat", cid.partition(":")[2], "回电。"))
        assert "工单号：HF" in replies[0].text
        record = await one.store.get(cid)
        assert record["state"] == "closed" and record["cancelled"] == "callback"
        assert [e["event"] for e in fake.tracker_events[cid]] == ["pause", "resume", "slot"]
        assert fake.tracker_events[cid][2] == {"event": "slot", "name": "handoff_requested_at",
                                               "value": None, "timestamp": fake.tracker_events[cid][2]["timestamp"]}
        assert await two.divert(Message("wechat", cid.partition(":")[2], "查电费")) is None  # Rasa again
        assert [r["cid"] for r in await one.store.waiting(["general"])] == ["web:later"]
    finally:
        await other.aclose()


async def test_rating_window_and_forms(hredis, hclock):
    outbox = Outbox()
    service = make_service(hredis, hclock, outbox, rating_minutes=30)
    for cid, answer, expected in (("web:r1", "５", (5, "")), ("web:r2", "4分，挺好", (4, "挺好")),
                                  ("web:r3", "三 还行吧", (3, "还行吧"))):
        await service.open(cid, queue="general", reason="")
        await service.claim(cid, "alice")
        await service.close(cid, "alice")
        (thanks,) = await service.divert(Message("web", cid[4:], answer))
        assert thanks.text == THANKS_TEXT
        record = await service.store.get(cid)
        assert (int(record["rating"]), record["rating_comment"]) == expected
    await service.open("web:late", queue="general", reason="")
    await service.claim("web:late", "alice")
    await service.close("web:late", "alice")
    hclock.now += 31 * 60
    assert await service.divert(Message("web", "late", "5")) is None  # too late: to the assistant
    assert (await service.store.get("web:late"))["state"] == "closed"
    stats = await service.store.stats()
    assert stats["ratings"]["agents"]["alice"]["count"] == 3
    assert stats["ratings"]["agents"]["alice"]["average"] == 4.0


def test_parse_rating_and_queue_names():
    assert parse_rating("5") == (5, "")
    assert parse_rating("５ 很满意") == (5, "很满意")
    assert parse_rating("1分") == (1, "")
    assert parse_rating("2星！服务一般") == (2, "服务一般")
    for text in ("6", "0", "12", "15", "好的", "", "55", "１２"):
        assert parse_rating(text) is None, text
    assert valid_queue("manager:KH01") == "manager:KH01"
    assert valid_queue("vip") == "vip"
    assert valid_queue("manager:") == "general" and valid_queue("admin") == "general"


async def test_redis_failure_sends_the_message_to_rasa(hclock):
    broken = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        service = make_service(broken, hclock, Outbox())
        assert await service.divert(Message("web", "abc", "你好")) is None
    finally:
        await broken.aclose()


async def test_request_consumer_opens_drops_stale_and_malformed(hredis, hclock):
    outbox = Outbox()
    service = make_service(hredis, hclock, outbox)
    consumer = HandoffRequests(hredis, service, "test-consumer", block_ms=100)
    now = dt.datetime.fromtimestamp(hclock.now, dt.timezone.utc)
    await hredis.xadd(STREAM, {"conversation_id": "web:new", "reason": "r", "queue": "manager:KH02",
                               "customer_type": "enterprise", "requested_at": now.isoformat()})
    await hredis.xadd(STREAM, {"conversation_id": "web:old", "reason": "r",
                               "requested_at": (now - dt.timedelta(hours=1)).isoformat()})
    await hredis.xadd(STREAM, {"conversation_id": "nonsense", "reason": "r"})
    await hredis.xadd(STREAM, {"conversation_id": "web:legacy", "reason": "old producer", "queue": "../x"})
    assert await consumer.run_once() == 4
    record = await service.store.get("web:new")
    assert (record["queue"], record["customer_type"]) == ("manager:KH02", "enterprise")
    assert await service.store.get("web:old") is None
    assert (await service.store.get("web:legacy"))["queue"] == "general"
    pending = await hredis.xpending(STREAM, "handoff")
    assert pending["pending"] == 0
    assert await hredis.xlen(STREAM) == 4  # acknowledged, left for other readers


async def test_a_request_left_by_a_dead_instance_is_claimed_by_another(hredis, hclock):
    service = make_service(hredis, hclock, Outbox())
    dead = HandoffRequests(hredis, service, "dead-instance", block_ms=100)
    await dead._ensure_group()
    now = dt.datetime.fromtimestamp(hclock.now, dt.timezone.utc)
    await hredis.xadd(STREAM, {"conversation_id": "sms:13800005678", "reason": "r",
                               "requested_at": now.isoformat()})
    # the dead instance read the entry and died before opening the hand-off
    taken = await hredis.xreadgroup("handoff", "dead-instance", {STREAM: ">"}, count=10)
    assert len(taken[0][1]) == 1
    alive = HandoffRequests(hredis, service, "alive-instance", block_ms=100, claim_idle_seconds=0.05)
    await asyncio.sleep(0.1)  # longer than its claim idle time
    assert await alive.run_once() == 1
    assert (await service.store.get("sms:13800005678"))["state"] == "waiting"
    assert (await hredis.xpending(STREAM, "handoff"))["pending"] == 0
    await dead.leave()
    await alive.leave()
    consumers = {redis_text(c["name"]) for c in await hredis.xinfo_consumers(STREAM, "handoff")}
    assert consumers == set()


async def test_what_the_action_server_writes_is_what_the_gateway_reads(hredis, hclock, handoff_redis_url):
    from integrations.customer_store import CustomerStore

    actions_redis = Redis.from_url(handoff_redis_url, decode_responses=True)  # as the action server's
    try:
        hclock.now = dt.datetime.now(dt.timezone.utc).timestamp()  # requested_at is the real time
        service = HandoffService(HandoffStore(hredis, clock=hclock), Outbox(), None,
                                 HandoffConfig(hours=BusinessHours.parse("always")),
                                 customers=CustomerStore(hredis))
        await CustomerStore(actions_redis).bind("wechat:o-vip", "3204567890")
        await CustomerStore(actions_redis).record_human_request("wechat:o-vip", "customer: 找客户经理", {
            "queue": "manager:KH01", "customer_type": "enterprise", "account_masked": "******7890",
            "channel": "wechat", "trigger": "request_human"})
        assert await HandoffRequests(hredis, service, "c1", block_ms=100).run_once() == 1
    finally:
        await actions_redis.aclose()
    record = await service.store.get("wechat:o-vip")
    assert (record["queue"], record["customer_type"], record["reason"]) == \
        ("manager:KH01", "enterprise", "customer: 找客户经理")
    assert record["account"] == "3204567890"  # the raw 户号 from the binding, masked when shown
