"""The conversation's last notice and last use (channels/notice_context.py): recorded by the
Deliverer, read and written by the router in one round trip, passed to Rasa as metadata, all
against a real Redis and the Rasa REST contract fake."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from channels.delivery import NOTICE_CONTEXT_SECONDS
from channels.messages import DeliveryResult, Message, Notice, Reply
from channels.notice_context import SEEN_TTL_SECONDS, decode_notice, notice_key, seen_key
from channels.rasa_client import RasaClient
from channels.router import ConversationRouter
from tests.channels.delivery_support import NIGHT
from tests.support.ports import free_port

BILL = Notice("bill_due", {"account": "******4567", "month": "2026年10月", "amount": "123.45",
                           "due_date": "2026年11月25日", "due_date_iso": "2026-11-25"},
              key="bc:due_reminder:2026-11-22:3:3201234567")
OUTAGE = Notice("outage_notice", {"outage_id": "JH00001", "area": "百家湖社区", "end": "11月29日 17:30"},
                urgent=True, key="bc:outage:JH00001:fault:3201234567")


def cid() -> str:
    return f"rec:{uuid.uuid4().hex[:12]}"


async def stored(redis: Redis, conversation_id: str) -> dict | None:
    raw = await redis.get(notice_key(conversation_id))
    return None if raw is None else json.loads(raw)


# -- the Deliverer records the last notice -------------------------------------------------------

async def test_a_sent_notice_becomes_the_last_notice_with_its_ttl(make_deliverer, recording, redis,
                                                                clock):
    deliverer = make_deliverer(recording())
    conv = cid()
    assert (await deliverer.deliver(conv, BILL, "notice")).status == "sent"
    assert await stored(redis, conv) == {"kind": "bill_due", "params": BILL.params,
                                         "key": BILL.key, "at": int(clock.now)}
    ttl = await redis.ttl(notice_key(conv))
    assert NOTICE_CONTEXT_SECONDS - 5 <= ttl <= NOTICE_CONTEXT_SECONDS == 72 * 3600
    clock.now += 60
    assert (await deliverer.deliver(conv, OUTAGE, "notice")).status == "sent"
    assert (await stored(redis, conv))["kind"] == "outage_notice"  # the last one wins
    assert (await stored(redis, conv))["at"] == int(clock.now)


async def test_a_notice_held_for_quiet_hours_is_recorded(make_deliverer, recording, redis, clock):
    clock.now = NIGHT
    deliverer = make_deliverer(recording())
    conv = cid()
    assert (await deliverer.deliver(conv, BILL, "notice")).status == "queued"
    assert (await stored(redis, conv))["key"] == BILL.key


@pytest.mark.parametrize("answer", [DeliveryResult("failed", "error", retry=True),
                                    DeliveryResult("skipped", "not_following")])
async def test_a_notice_not_sent_is_not_recorded(make_deliverer, recording, redis, answer):
    channel = recording()
    channel.answer = answer
    deliverer = make_deliverer(channel)
    conv = cid()
    assert (await deliverer.deliver(conv, BILL, "notice")).status == answer.status
    assert await stored(redis, conv) is None


async def test_opted_out_transactional_and_replies_are_not_recorded(make_deliverer, recording, redis):
    deliverer = make_deliverer(recording())
    conv, other = cid(), cid()
    await deliverer.optouts.opt_out(conv)
    assert (await deliverer.deliver(conv, BILL, "notice")).reason == "opted_out"
    assert (await deliverer.deliver(other, Notice("verification_code", {"code": "123456"}),
                                    "notice")).status == "sent"
    assert (await deliverer.deliver(other, [Reply("您好")], "reply")).status == "sent"
    assert await stored(redis, conv) is None and await stored(redis, other) is None


class FailingSet:
    """A Redis client whose SET fails (the connection dropped), everything else real."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def __getattr__(self, name):
        return getattr(self._redis, name)

    async def set(self, *args, **kwargs):
        raise RedisConnectionError("connection reset")


async def test_a_redis_failure_while_recording_does_not_change_the_delivery(redis_url, recording,
                                                                          caplog):
    from channels.delivery import Deliverer
    from channels.optout import OptOutStore
    from channels.quiet_hours import QuietHours

    client = Redis.from_url(redis_url)
    try:
        broken = FailingSet(client)
        deliverer = Deliverer(broken, OptOutStore(client, f"pd:test:optout:{uuid.uuid4().hex}"),
                              QuietHours(None))
        deliverer.register(recording())
        conv = cid()
        assert (await deliverer.deliver(conv, BILL, "notice")).status == "sent"
        assert "notice context of rec:" in caplog.text
        assert await client.get(notice_key(conv)) is None
    finally:
        await client.aclose()


async def test_notice_context_off(make_deliverer, recording, redis, redis_url):
    from channels.delivery import Deliverer
    from channels.optout import OptOutStore
    from channels.quiet_hours import QuietHours

    deliverer = Deliverer(redis, OptOutStore(redis, f"pd:test:optout:{uuid.uuid4().hex}"),
                          QuietHours(None), notice_context_seconds=0)
    deliverer.register(recording())
    conv = cid()
    assert (await deliverer.deliver(conv, BILL, "notice")).status == "sent"
    assert await stored(redis, conv) is None


def test_the_gateway_config_reads_notice_context_hours():
    from channels.config import ConfigError, GatewayConfig

    assert GatewayConfig.from_env({}).notice_context_hours == 72
    assert GatewayConfig.from_env({"NOTICE_CONTEXT_HOURS": "0"}).notice_context_hours == 0
    with pytest.raises(ConfigError, match="NOTICE_CONTEXT_HOURS"):
        GatewayConfig.from_env({"NOTICE_CONTEXT_HOURS": "-1"})


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[]", b'{"params": {}}', "\ud800"])
def test_malformed_records_are_no_context(raw):
    assert decode_notice(raw) is None


# -- the router: last use and the notice as Rasa metadata ----------------------------------------

@pytest.fixture
async def router(redis, rasa_fake):
    client = RasaClient(rasa_fake.url, 5.0, connect_timeout_seconds=1.0)
    await client.start()
    yield ConversationRouter(client, redis)
    await client.close()


async def test_every_message_marks_the_conversation_as_used(router, redis):
    user = uuid.uuid4().hex[:10]
    before = int(time.time())
    assert await router.handle(Message("wechat", user, "查电费")) == [Reply("收到：查电费")]
    seen = int(await redis.get(seen_key(f"wechat:{user}")))
    assert before <= seen <= int(time.time())
    ttl = await redis.ttl(seen_key(f"wechat:{user}"))
    assert SEEN_TTL_SECONDS - 5 <= ttl <= SEEN_TTL_SECONDS == 400 * 86400


async def test_the_last_notice_goes_to_rasa_as_metadata(router, redis, rasa_fake, make_deliverer,
                                                         recording):
    user = uuid.uuid4().hex[:10]
    conv = f"rec:{user}"
    await router.handle(Message("rec", user, "你好"))
    assert "notice" not in rasa_fake.calls[-1]["metadata"]
    assert (await make_deliverer(recording()).deliver(conv, OUTAGE, "notice")).status == "sent"
    await router.handle(Message("rec", user, "什么时候来电"))
    metadata = rasa_fake.calls[-1]["metadata"]
    assert metadata["notice"] == {"kind": "outage_notice", "params": OUTAGE.params,
                                  "key": OUTAGE.key, "at": metadata["notice"]["at"]}
    assert metadata["channel"] == "rec"


async def test_a_channel_cannot_supply_the_notice_itself(router, rasa_fake):
    forged = {"kind": "bill_due", "params": {}, "key": "bc:x:3209999999", "at": 1}
    await router.handle(Message("web", uuid.uuid4().hex[:10], "已经交了", meta={"notice": forged}))
    assert "notice" not in rasa_fake.calls[-1]["metadata"]


async def test_without_redis_the_message_still_reaches_rasa(rasa_fake, caplog):
    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    client = RasaClient(rasa_fake.url, 5.0, connect_timeout_seconds=1.0)
    await client.start()
    try:
        router = ConversationRouter(client, dead, lock_wait_seconds=1.0)
        assert await router.handle(Message("web", "u-no-redis", "查电费")) == [Reply("收到：查电费")]
        assert "conversation context of web:" in caplog.text
        assert "notice" not in rasa_fake.calls[-1]["metadata"]
    finally:
        await client.close()
        await dead.aclose()
