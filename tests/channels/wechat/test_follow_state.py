"""Subscribe/unsubscribe stay consistent with deduplication when Redis fails half-way.

The failure is real: the first instance talks to Redis as an ACL user that may not touch the
opt-out store's key, so exactly that step fails; WeChat's retry of the same request then
reaches an instance with full access (as after a Redis fail-over or on a healthy instance)."""
from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from channels.dispatcher import Dispatcher
from channels.wechat.config import WeChatConfig
from channels.optout import OPT_OUT_KEY, OptOutStore
from channels.wechat.webhook import WeChatWebhook
from fakes.wechat_api import WeChatPusher


def acl_keys_except(key: str) -> list[str]:
    """ACL key patterns allowing every key but ``key`` (Redis ACLs only list allowed keys)."""
    def esc(text: str) -> str:
        return "".join("\\" + c if c in "*?[]\\^" else c for c in text)

    patterns = [f"~{esc(key[:i])}[^{esc(key[i])}]*" for i in range(len(key))]
    patterns += [f"~{esc(key[:i])}" for i in range(1, len(key))]
    patterns.append(f"~{esc(key)}?*")
    return patterns


async def noop(user: str, job: dict) -> None:
    return None


class Instance:
    """One webhook (the product's WeChatWebhook and Dispatcher) on loopback over ``redis``."""

    def __init__(self, redis: Redis, config: WeChatConfig, namespace: str) -> None:
        self.redis = redis
        self.dispatcher = Dispatcher(redis, noop, namespace=namespace)
        app = web.Application()
        app.router.add_post("/wechat", WeChatWebhook(config, redis, self.dispatcher).handle_post)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def setup(redis_url, redis) -> AsyncIterator[dict]:
    user = "o" + secrets.token_hex(14)
    acl_user, password = "gw" + secrets.token_hex(4), secrets.token_hex(8)
    await redis.execute_command("ACL", "SETUSER", acl_user, "on", f">{password}", "+@all",
                                *acl_keys_except(OPT_OUT_KEY))
    limited = Redis.from_url(redis_url.replace("redis://", f"redis://{acl_user}:{password}@"))
    config = WeChatConfig(token="tok" + secrets.token_hex(4), app_id="wx" + secrets.token_hex(8),
                          app_secret="secret", encrypt_mode="plain")
    namespace = "test:wechat:" + secrets.token_hex(4)
    failing, healthy = Instance(limited, config, namespace), Instance(redis, config, namespace)
    for instance in (failing, healthy):
        await instance.server.start_server()
    session = aiohttp.ClientSession()
    yield {"user": user, "failing": failing, "healthy": healthy, "session": session,
           "pusher": WeChatPusher(failing.url, config.token, config.app_id)}
    await session.close()
    for instance in (failing, healthy):
        await instance.server.close()
    await limited.aclose()
    await redis.execute_command("ACL", "DELUSER", acl_user)


async def test_refollow_after_a_failed_opt_in_ends_opted_in_with_one_welcome(setup, redis):
    user, p, session = setup["user"], setup["pusher"], setup["session"]
    now = int(time.time())
    optouts = OptOutStore(redis)
    await optouts.opt_out(f"wechat:{user}", at=now - 100)  # unfollowed earlier
    query, body = p.build(p.event_fields(user, "subscribe", create_time=now))

    assert (await p.post_raw(session, query, body, base_url=setup["failing"].url))[0] == 503
    # WeChat retries the same request; it reaches an instance where Redis works.
    assert await p.post_raw(session, query, body, base_url=setup["healthy"].url) == (200, "success")
    assert await p.post_raw(session, query, body, base_url=setup["healthy"].url) == (200, "success")

    assert not await optouts.is_opted_out(f"wechat:{user}")
    dispatcher = setup["healthy"].dispatcher
    assert await redis.llen(dispatcher.queue_key(user)) == 1  # one welcome, not two


async def test_unfollow_after_a_failed_opt_out_ends_opted_out(setup, redis):
    user, p, session = setup["user"], setup["pusher"], setup["session"]
    query, body = p.build(p.event_fields(user, "unsubscribe", create_time=int(time.time())))
    assert (await p.post_raw(session, query, body, base_url=setup["failing"].url))[0] == 503
    assert await p.post_raw(session, query, body, base_url=setup["healthy"].url) == (200, "success")
    assert await OptOutStore(redis).is_opted_out(f"wechat:{user}")


async def test_a_late_retry_of_an_old_subscribe_does_not_undo_a_newer_unsubscribe(setup, redis):
    user, p, session = setup["user"], setup["pusher"], setup["session"]
    healthy = setup["healthy"].url
    now = int(time.time())
    old_follow = p.build(p.event_fields(user, "subscribe", create_time=now - 2))
    # The first delivery of the old subscribe failed; meanwhile the customer unfollowed.
    assert (await p.post_raw(session, *old_follow, base_url=setup["failing"].url))[0] == 503
    unfollow = p.build(p.event_fields(user, "unsubscribe", create_time=now - 1))
    assert await p.post_raw(session, *unfollow, base_url=healthy) == (200, "success")
    assert await p.post_raw(session, *old_follow, base_url=healthy) == (200, "success")
    assert await OptOutStore(redis).is_opted_out(f"wechat:{user}")
