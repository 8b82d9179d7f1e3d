"""Numbered options (channels.options): the number forms, and the same cases on SMS and WeChat.

Each channel case goes through that channel's inbound path (``SmsChannel.handle_inbound``,
``WeChatResponder``) with the real router, real Redis, the loopback provider fakes (Aliyun SMS,
the WeChat API) and the FAKE of Rasa's REST contract (fakes/rasa_rest.py: ``按钮`` → a
question with two buttons, ``两组按钮`` → two messages with three buttons in all).
"""
from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from channels.delivery import Deliverer
from channels.options import Option, OptionMemory, option_number, options_key
from channels.optout import OptOutStore
from channels.quiet_hours import QuietHours
from channels.rasa_client import RasaClient
from channels.router import ConversationRouter
from fakes.rasa_rest import FakeRasaRest
from tests.channels.sms.conftest import SIGN, TEMPLATES, aliyun_templates
from fakes.aliyun_sms import FakeAliyunSms
from fakes.wechat_api import FakeWeChatApi

TTL = 321  # seconds; each channel's own option TTL setting, the same here for both


@pytest.mark.parametrize("text,number", [
    ("1", 1), ("２", 2), (" 3。", 3), ("第2个", 2), ("选1", 1), ("二", 2), ("10", 10),
    ("0", None), ("12345", None), ("1号楼停电", None), ("查电费", None), ("", None),
    ("十", 10), ("十一", 11), ("二十", 20), ("二十三", 23), ("两", 2), ("第3项", 3), ("第十二个", 12),
    ("选择4", 4), ("第 2 个", 2), ("１２", 12), ("3！", 3), ("2.", 2), ("一百", None), ("第二个人", None),
])
def test_option_numbers(text, number):
    assert option_number(text) == number


async def test_memory_keeps_options_after_a_pick_and_forgets_them_for_an_answer_without(redis):
    memory = OptionMemory(redis, TTL)
    conversation = f"sms:{uuid.uuid4().hex}"
    await memory.remember(conversation, [("本月", "/a"), ("上个月", "/b")])
    assert 0 < await redis.ttl(options_key(conversation)) <= TTL
    assert await memory.pick(conversation, "第2个") == Option("上个月", "/b")
    assert await memory.pick(conversation, "1") == Option("本月", "/a")  # picked again
    assert await memory.pick(conversation, "3") is None                   # not on offer
    await memory.remember(conversation, [])
    assert await redis.exists(options_key(conversation)) == 0
    assert await memory.pick(conversation, "1") is None
    brief = OptionMemory(redis, 0.5)  # a sub-second setting still remembers (Redis refuses ex=0)
    await brief.remember(conversation, [("本月", "/a")])
    assert await redis.ttl(options_key(conversation)) == 1


@dataclass
class Conversation:
    """One customer on one channel: ``say`` runs a message through the channel's inbound path."""

    channel: str
    conversation_id: str
    say: Callable[[str], Awaitable[None]]
    shown: Callable[[], list[str]]   # what the customer has read so far, one entry per message
    rasa: FakeRasaRest

    @property
    def received(self) -> list[str]:
        """What the assistant received (text, or the payload of a picked option)."""
        return self.rasa.received[self.conversation_id]


@pytest.fixture
async def text_redis(redis_url) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def router(redis, rasa_fake) -> AsyncIterator[ConversationRouter]:
    rasa = RasaClient(rasa_fake.url, 5)
    await rasa.start()
    router = ConversationRouter(rasa, redis)
    yield router
    await router.close()
    await rasa.close()


@pytest.fixture(params=["sms", "wechat"])
async def conversation(request, redis, text_redis, router, rasa_fake) -> AsyncIterator[Conversation]:
    if request.param == "sms":
        async with _sms(text_redis, router, rasa_fake) as conv:
            yield conv
    else:
        async with _wechat(redis, router, rasa_fake) as conv:
            yield conv


class _sms:
    def __init__(self, redis, router, rasa) -> None:
        self.redis, self.router, self.rasa = redis, router, rasa

    async def __aenter__(self) -> Conversation:
        from channels.sms.channel import SmsChannel
        from channels.sms.config import RateLimit, SmsConfig
        from channels.sms.outbox import Outbox
        from channels.sms.providers.aliyun import AliyunSmsSender
        from channels.sms.ratelimit import RateLimiter
        from channels.sms.templates import SmsRenderer, TemplateBook

        self.fake = FakeAliyunSms(sign_names=(SIGN,), templates=aliyun_templates())
        await self.fake.start()
        self.sender = AliyunSmsSender(self.fake.access_key_id, self.fake.access_key_secret,
                                      self.fake.url, SIGN)
        outbox = Outbox(self.redis, self.sender, QuietHours(None), RateLimiter(
            self.redis, {"reply": (RateLimit(100, 3600),), "proactive": (RateLimit(100, 3600),)}),
            OptOutStore(self.redis), queue_key=f"pd:sms:outbox:test:{uuid.uuid4().hex}")
        renderer = SmsRenderer(TemplateBook.from_dict(TEMPLATES), "aliyun", SIGN)
        deliverer = Deliverer(self.redis, OptOutStore(self.redis), QuietHours(None))
        channel = SmsChannel(SmsConfig(options_ttl_seconds=TTL), self.redis, self.router, outbox,
                             renderer, deliverer.deliver)
        deliverer.register(channel.adapter)
        phone = f"1{random.choice('3456789')}{random.randrange(10**9):09d}"

        def shown() -> list[str]:
            return ["".join(s["params"].values()) for s in self.fake.sent if s["phone"] == phone]

        return Conversation("sms", f"sms:{phone}", lambda text: channel.handle_inbound(phone, text, {}),
                            shown, self.rasa)

    async def __aexit__(self, *exc) -> None:
        await self.sender.close()
        await self.fake.close()


class _wechat:
    def __init__(self, redis, router, rasa) -> None:
        self.redis, self.router, self.rasa = redis, router, rasa

    async def __aenter__(self) -> Conversation:
        from channels.wechat.api import WeChatApi
        from channels.wechat.config import WeChatConfig
        from channels.wechat.replies import WeChatResponder

        self.fake = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
        await self.fake.start()
        self.api = WeChatApi(self.fake.base_url, self.fake.app_id, self.fake.app_secret, self.redis)
        deliverer = Deliverer(self.redis, OptOutStore(self.redis), QuietHours(None))
        responder = WeChatResponder(WeChatConfig(options_ttl_seconds=TTL), self.redis, self.api,
                                    self.router, deliverer.deliver)
        deliverer.register(responder.adapter)
        openid = "o" + secrets.token_hex(14)
        return Conversation("wechat", f"wechat:{openid}",
                            lambda text: responder(openid, {"kind": "text", "text": text, "meta": {}}),
                            lambda: self.fake.texts_to(openid), self.rasa)

    async def __aexit__(self, *exc) -> None:
        await self.api.close()
        await self.fake.close()


@pytest.mark.parametrize("pick", ["2", "２", "二", "第2个", "第二个", "选2", "2。", " 2 "])
async def test_a_number_in_any_usual_form_picks_the_option(conversation, pick):
    await conversation.say("按钮")
    (question,) = conversation.shown()
    assert "本月" in question and "上个月" in question
    await conversation.say(pick)
    assert conversation.received == ["按钮", '/inform{"month":"上个月"}']


async def test_options_are_numbered_across_every_reply_of_the_answer(conversation):
    await conversation.say("两组按钮")
    shown = "\n".join(conversation.shown())
    assert shown.index("查电费") < shown.index("查停电") < shown.index("转人工")
    assert "3" in shown[shown.index("查停电"):shown.index("转人工") + 1]  # 转人工 is option 3
    await conversation.say("第3个")
    await conversation.say("两组按钮")
    await conversation.say("1")
    assert conversation.received == ["两组按钮", "/request_human", "两组按钮", "/query_bill"]


async def test_a_newer_answer_replaces_the_options(conversation):
    await conversation.say("按钮")
    await conversation.say("两组按钮")
    await conversation.say("2")
    assert conversation.received[-1] == "/query_outage"  # not 上个月 of the older question


async def test_a_newer_answer_without_options_clears_them(conversation, redis):
    await conversation.say("按钮")
    await conversation.say("谢谢")
    await conversation.say("1")
    assert conversation.received == ["按钮", "谢谢", "1"]
    assert await redis.exists(options_key(conversation.conversation_id)) == 0


async def test_a_number_beyond_the_options_or_without_options_is_text(conversation):
    await conversation.say("1")
    await conversation.say("按钮")
    await conversation.say("3")
    assert conversation.received == ["1", "按钮", "3"]


async def test_options_are_remembered_for_the_configured_time(conversation, redis):
    await conversation.say("按钮")
    assert 0 < await redis.ttl(options_key(conversation.conversation_id)) <= TTL
    await redis.delete(options_key(conversation.conversation_id))  # as when the TTL runs out
    await conversation.say("1")
    assert conversation.received == ["按钮", "1"]
