"""The WeChat API client and the shared access_token, against the loopback fake and real Redis."""
from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from channels.wechat.api import WeChatApi
from channels.wechat.errors import WeChatApiError
from fakes.wechat_api import FakeWeChatApi
from tests.support.ports import free_port

SEND = "/cgi-bin/message/custom/send"


@pytest.fixture
async def fake():
    api = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    await api.start()
    yield api
    await api.close()


def client(fake: FakeWeChatApi, redis, base: str, **kwargs) -> WeChatApi:
    kwargs.setdefault("retry_delays", (0.01, 0.02, 0.04))
    return WeChatApi(base, fake.app_id, fake.app_secret, redis, **kwargs)


@pytest.fixture
async def base(fake):
    return fake.base_url


async def test_one_token_shared_by_many_instances_fetched_once(fake, redis, base):
    instances = [client(fake, redis, base) for _ in range(5)]
    try:
        await asyncio.gather(*(api.send_text(f"user{i:04d}", f"第{i}条") for i, api in
                               enumerate(instances * 20)))
        assert fake.token_requests == 1
        assert sum(api.tokens.fetches for api in instances) == 1
        assert len(fake.sent) == 100
    finally:
        await asyncio.gather(*(api.close() for api in instances))


@pytest.mark.parametrize("break_token", ["expire", "revoke", "malformed"])
async def test_rejected_token_is_refreshed_once_and_the_call_retried(fake, redis, base, break_token):
    a, b = client(fake, redis, base), client(fake, redis, base)
    try:
        await a.send_text("user0001", "before")
        if break_token == "expire":
            fake.expire_tokens()        # 42001
        elif break_token == "revoke":
            fake.revoke_tokens()        # 40001
        else:                           # 40014: what Redis holds is garbage
            await redis.set(a.tokens.key, '{"token": "bad token!", "expires_at": %d}' % (time.time() + 7000))
        await asyncio.gather(*(api.send_text("user0001", f"after {i}") for i, api in enumerate([a, b] * 10)))
        assert fake.token_requests == 2  # one initial, exactly one refresh for all 20 callers
        assert len(fake.texts_to("user0001")) == 21
    finally:
        await a.close()
        await b.close()


async def test_token_is_refreshed_by_one_instance_before_it_expires(fake, redis, base):
    fake.token_lifetime = 200  # inside the 300 s refresh margin from the start
    a, b = client(fake, redis, base), client(fake, redis, base)
    try:
        await a.send_text("user0002", "x")
        first = await a.tokens.get()
        assert fake.token_requests == 2  # still-valid token refreshed proactively on the next use
        assert first in fake.valid_tokens
        fake.token_lifetime = 7200
        await asyncio.gather(*(api.tokens.get() for api in [a, b] * 10))
        assert fake.token_requests == 3
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("errcode", [-1, 45009, 45011])
async def test_busy_and_throttled_calls_are_retried_with_bounded_backoff(fake, redis, base, errcode):
    api = client(fake, redis, base)
    try:
        fake.fail_next(SEND, errcode, times=2)
        await api.send_text("user0003", "eventually")
        assert fake.texts_to("user0003") == ["eventually"]
        fake.fail_next(SEND, errcode, times=10)
        started = time.monotonic()
        with pytest.raises(WeChatApiError) as info:
            await api.send_text("user0003", "never")
        assert info.value.errcode == errcode and info.value.is_transient
        assert time.monotonic() - started < 2
        assert [c for c in fake.calls if c == (SEND, errcode)].__len__() == 2 + 4  # 1 try + 3 retries
    finally:
        await api.close()


@pytest.mark.parametrize("errcode", [45015, 43004, 48002, 45047])
async def test_undeliverable_errors_stop_at_once(fake, redis, base, errcode):
    api = client(fake, redis, base)
    try:
        fake.refuse_user("user0004", errcode)
        with pytest.raises(WeChatApiError) as info:
            await api.send_text("user0004", "x")
        assert info.value.errcode == errcode and info.value.is_undeliverable
        assert fake.calls.count((SEND, errcode)) == 1
    finally:
        await api.close()


async def test_wrong_secret_fails_fast_without_hammering_wechat(fake, redis, base):
    api = WeChatApi(base, fake.app_id, "wrong-secret", redis, retry_delays=(0.01,))
    try:
        results = await asyncio.gather(*(api.send_text("user0005", "x") for _ in range(30)),
                                       return_exceptions=True)
        assert all(isinstance(r, WeChatApiError) for r in results)
        assert fake.token_requests == 1  # the failure is remembered briefly, not retried hot
    finally:
        await api.close()


async def test_unreachable_api_is_an_error_not_a_hang(redis):
    api = WeChatApi(f"http://127.0.0.1:{free_port()}", "wx" + secrets.token_hex(8), "s", redis,
                    timeout_seconds=1, retry_delays=(0.01,))
    try:
        with pytest.raises(WeChatApiError) as info:
            await api.send_text("user0006", "x")
        assert info.value.errcode is None
    finally:
        await api.close()


async def test_template_and_menu_calls(fake, redis, base):
    api = client(fake, redis, base)
    try:
        msgid = await api.send_template("user0007", "TPL_OUTAGE", {"first": {"value": "停电通知"}})
        assert fake.templates[-1]["msgid"] == msgid
        assert await api.get_menu() is None
        await api.create_menu({"button": [{"type": "click", "name": "查电费", "key": "intent:query_bill"}]})
        assert (await api.get_menu())["button"][0]["key"] == "intent:query_bill"
        await api.delete_menu()
        assert await api.get_menu() is None
        with pytest.raises(WeChatApiError) as info:
            await api.create_menu({"button": [{"type": "click", "name": "x" * 20, "key": "k"}]})
        assert info.value.errcode == 40018
    finally:
        await api.close()
