"""ConversationRouter against a real Redis and the Rasa REST contract fake, on loopback."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import REGISTRY

from channels.messages import Button, Message, Reply
from channels.rasa_client import RasaClient
from channels.router import (BUSY_TEXT, EMPTY_TEXT, NO_ANSWER_TEXT, ConversationRouter,
                             clean_text, replies_from_rasa)
from tests.support.ports import free_port


@pytest.fixture
async def make_router(redis):
    clients: list[RasaClient] = []

    async def make(rasa_url: str, timeout: float = 5.0, **kwargs) -> ConversationRouter:
        client = RasaClient(rasa_url, timeout, connect_timeout_seconds=1.0)
        await client.start()
        clients.append(client)
        return ConversationRouter(client, redis, **kwargs)

    yield make
    for client in clients:
        await client.close()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def msg(text: str, user: str = "u-router-1", channel: str = "web", **kw) -> Message:
    return Message(channel, user, text, **kw)


# -- text cleaning -------------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("查\x00电\x1b费\x7f", "查电费"),
    ("  \t\n ", ""),
    ("\x00\x01\x02", ""),
    ("第一行\r\n第二行\r第三行", "第一行\n第二行\n第三行"),
    ("a\n\n\n\n\nb", "a\n\nb"),
    ("户号\u202e7654321023", "户号7654321023"),      # bidi override removed
    ("\ufeff你好", "你好"),
    ("👨\u200d👩\u200d👧\u200d👦❤\ufe0f", "👨\u200d👩\u200d👧\u200d👦❤\ufe0f"),  # emoji sequences kept
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("３２０１２３４５６７", "３２０１２３４５６７"),  # NFKC is the NLU's job
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_replies_from_rasa_converts_every_kind_and_skips_blank_items():
    answer = [
        {"recipient_id": "x", "text": "选一个", "buttons": [{"title": "本月", "payload": "/a"},
                                                           {"title": "无载荷"}, {"payload": "no title"}]},
        {"recipient_id": "x", "image": "https://example.com/a.png"},
        {"recipient_id": "x", "custom": {"kind": "card"}},
        {"recipient_id": "x", "attachment": {"type": "file"}},
        {"recipient_id": "x", "text": ""},
    ]
    assert replies_from_rasa(answer) == [
        Reply("选一个", (Button("本月", "/a"), Button("无载荷", "无载荷"))),
        Reply("", image="https://example.com/a.png"),
        Reply("", custom={"kind": "card"}),
        Reply("", custom={"attachment": {"type": "file"}}),
    ]


# -- input the router answers itself ---------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\n\t\n", "\x00\x07\x1b", "\u202e\ufeff"])
async def test_empty_input_is_answered_without_rasa(make_router, rasa_fake, text):
    router = await make_router(rasa_fake.url)
    before = metric("powerdesk_gateway_rejected_input_total", channel="web", reason="empty")
    assert await router.handle(msg(text)) == [Reply(EMPTY_TEXT)]
    assert rasa_fake.calls == []
    assert metric("powerdesk_gateway_rejected_input_total", channel="web", reason="empty") == before + 1


async def test_ten_thousand_characters_are_refused_politely_and_only_the_length_is_logged(
        make_router, rasa_fake, caplog):
    router = await make_router(rasa_fake.url, max_message_chars=1000)
    text = "我家电费怎么这么贵" * 1111 + "a"  # 10,000 characters
    assert len(text) == 10000
    with caplog.at_level(logging.INFO, logger="channels.router"):
        (reply,) = await router.handle(msg(text))
    assert "10000字" in reply.text and "1000字" in reply.text and "精简" in reply.text
    assert reply.buttons == ()
    assert rasa_fake.calls == []
    assert "10000 characters" in caplog.text
    assert "我家电费" not in caplog.text


async def test_text_at_the_limit_goes_to_rasa_and_control_characters_do_not_count(make_router, rasa_fake):
    router = await make_router(rasa_fake.url, max_message_chars=20)
    assert (await router.handle(msg("电" * 20 + "\x00" * 50)))[0].text == "收到：" + "电" * 20
    assert "精简" in (await router.handle(msg("电" * 21)))[0].text


# -- what goes to Rasa -----------------------------------------------------------------------

async def test_emoji_only_goes_to_rasa_unchanged(make_router, rasa_fake):
    router = await make_router(rasa_fake.url)
    emoji = "😡😡👨\u200d👩\u200d👧⚡️"
    assert await router.handle(msg(emoji)) == [Reply(f"收到：{emoji}")]
    assert rasa_fake.received["web:u-router-1"] == [emoji]


async def test_control_characters_are_removed_before_rasa(make_router, rasa_fake):
    router = await make_router(rasa_fake.url)
    await router.handle(msg("查一下\x00电费\x1b[31m\r\n谢谢"))
    assert rasa_fake.received["web:u-router-1"] == ["查一下电费[31m\n谢谢"]


async def test_markup_is_passed_through_as_plain_text(make_router, rasa_fake):
    router = await make_router(rasa_fake.url)
    html = '<script>alert("x")</script><b>停电</b> &amp;'
    assert await router.handle(msg(html)) == [Reply(f"收到：{html}")]
    assert rasa_fake.received["web:u-router-1"] == [html]


async def test_payload_is_sent_instead_of_the_title_with_metadata(make_router, rasa_fake):
    router = await make_router(rasa_fake.url)
    await router.handle(msg("上个月", payload='/inform{"month":"上个月"}', meta={"source": "button"}))
    (call,) = rasa_fake.calls
    assert call == {"sender": "web:u-router-1", "message": '/inform{"month":"上个月"}',
                    "metadata": {"source": "button", "channel": "web"}}


async def test_buttons_from_rasa_become_reply_buttons(make_router, rasa_fake):
    router = await make_router(rasa_fake.url)
    (reply,) = await router.handle(msg("按钮"))
    assert reply.text == "请问您要查询哪个月的电费？"
    assert reply.buttons == (Button("本月", '/inform{"month":"本月"}'),
                             Button("上个月", '/inform{"month":"上个月"}'))


async def test_rasa_answering_nothing_gets_a_polite_apology(make_router, rasa_fake):
    router = await make_router(rasa_fake.url)
    before = metric("powerdesk_gateway_rasa_empty_answers_total", channel="web")
    assert await router.handle(msg("空")) == [Reply(NO_ANSWER_TEXT)]
    assert metric("powerdesk_gateway_rasa_empty_answers_total", channel="web") == before + 1


# -- Rasa failures ---------------------------------------------------------------------------

@pytest.mark.parametrize("status, reason", [(500, "http_5xx"), (503, "http_5xx"), (404, "http_4xx")])
async def test_rasa_error_status_becomes_the_busy_reply(make_router, rasa_fake, status, reason):
    router = await make_router(rasa_fake.url)
    rasa_fake.fail_status = status
    before = metric("powerdesk_gateway_busy_replies_total", channel="web", reason=reason)
    assert await router.handle(msg("查电费")) == [Reply(BUSY_TEXT)]
    assert metric("powerdesk_gateway_busy_replies_total", channel="web", reason=reason) == before + 1


async def test_rasa_not_listening_becomes_the_busy_reply(make_router):
    router = await make_router(f"http://127.0.0.1:{free_port()}")
    before = metric("powerdesk_gateway_busy_replies_total", channel="web", reason="connection")
    assert await router.handle(msg("查电费")) == [Reply(BUSY_TEXT)]
    assert metric("powerdesk_gateway_busy_replies_total", channel="web", reason="connection") == before + 1


async def test_slow_rasa_is_cut_off_at_the_timeout(make_router, rasa_fake):
    router = await make_router(rasa_fake.url, timeout=0.3)
    started = time.monotonic()
    assert await router.handle(msg("慢3")) == [Reply(BUSY_TEXT)]
    assert time.monotonic() - started < 1.5
    assert metric("powerdesk_gateway_rasa_latency_seconds_count", outcome="timeout") >= 1


async def test_unparseable_rasa_answer_becomes_the_busy_reply(make_router, rasa_fake):
    router = await make_router(rasa_fake.url)
    assert await router.handle(msg("坏JSON")) == [Reply(BUSY_TEXT)]


async def test_logs_mask_phone_numbers_in_conversation_ids(make_router, caplog):
    router = await make_router(f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.INFO, logger="channels.router"):
        await router.handle(Message("sms", "13812345678", "查电费"))
    assert "13812345678" not in caplog.text
    assert "5678" in caplog.text


# -- one message at a time per conversation --------------------------------------------------

async def test_two_router_instances_never_overlap_one_conversation(make_router, rasa_fake):
    """Two routers = two gateway instances sharing Redis; the fake notices any overlap."""
    rasa_fake.jitter = 0.03
    first, second = await make_router(rasa_fake.url), await make_router(rasa_fake.url)
    users = [f"u-serial-{i}" for i in range(5)]
    jobs = [(first if n % 2 else second).handle(msg(f"第{n}条", user=u))
            for n in range(6) for u in users]
    results = await asyncio.gather(*jobs)
    assert all(len(r) == 1 and r[0].text.startswith("收到：") for r in results)
    assert rasa_fake.overlaps == []
    assert rasa_fake.max_parallel > 1  # different conversations did run in parallel
    for u in users:
        assert sorted(rasa_fake.received[f"web:{u}"]) == sorted(f"第{n}条" for n in range(6))


async def test_one_instance_keeps_the_order_of_a_conversation(make_router, rasa_fake):
    rasa_fake.jitter = 0.02
    router = await make_router(rasa_fake.url)
    texts = [f"消息{n}" for n in range(8)]
    results = await asyncio.gather(*(router.handle(msg(t, user="u-order")) for t in texts))
    assert [r[0].text for r in results] == [f"收到：{t}" for t in texts]
    assert rasa_fake.received["web:u-order"] == texts


async def test_a_conversation_stuck_elsewhere_gets_the_busy_reply_after_the_bounded_wait(
        make_router, rasa_fake, redis):
    router = await make_router(rasa_fake.url, lock_wait_seconds=0.3, lock_ttl_seconds=5)
    await redis.set("pd:gateway:turn:web:u-stuck", "another-instance", px=5000)
    started = time.monotonic()
    assert await router.handle(msg("查电费", user="u-stuck")) == [Reply(BUSY_TEXT)]
    assert 0.25 < time.monotonic() - started < 2
    assert rasa_fake.calls == []
    await redis.delete("pd:gateway:turn:web:u-stuck")
    assert await router.handle(msg("查电费", user="u-stuck")) == [Reply("收到：查电费")]


async def test_logs_do_not_carry_whole_web_session_ids(make_router, caplog):
    router = await make_router(f"http://127.0.0.1:{free_port()}")
    session_id = "0123456789abcdef0123456789abcdef"
    with caplog.at_level(logging.INFO, logger="channels.router"):
        await router.handle(Message("web", session_id, "查电费"))
    assert "web:01234567" in caplog.text and session_id not in caplog.text
