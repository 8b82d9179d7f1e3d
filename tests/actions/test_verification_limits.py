"""Verification limits, one-time codes, web binding expiry and log hygiene, through the real
action server over HTTP, real Redis and the reference backends.

Two extra action servers (SMS codes off and on) point at reference backends served in a thread
of this process on a fixed port, with a middleware that counts the billing backend's verify
calls: the count proves how many guesses were evaluated, not only what the customer was told.
"""
from __future__ import annotations

import asyncio
import collections
import json
import sqlite3
import threading
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from backends import demo_accounts as demo
from backends.app import BackendsAppConfig, create_app
from integrations.customer_store import (
    ACCOUNT,
    ADDRESS,
    CONVERSATION,
    OUTBOUND_STREAM,
    SERVICE,
    VerificationLimits,
)
from scripts.stack import backends_env, free_port
from tests.actions.account_data import bind, customer_store, sender, unknown_account
from tests.actions.test_account import FORM, give_account, give_last4, validate
from tests.backends.server import SettableClock
from tests.support.actions import entity, run_action, slot_events, texts, user_message
from tests.support.redis_db import VERIFICATION_LIMITS_DB, redis_database

LIMITS = VerificationLimits()
ACCOUNT_LIMIT = LIMITS.account.max_count
DEMO = {demo.RESIDENTIAL_TOU, demo.OVERDUE, demo.COMMERCIAL, demo.ENTERPRISE, demo.CLOSED,
        demo.NEW_CONNECTION_ACCOUNT}


class CountedBackends:
    """The reference backends in a thread of their own (any test's event loop may call them),
    counting billing verify calls per 户号."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.port = free_port()
        self.verify_calls: collections.Counter[str] = collections.Counter()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    def start(self) -> None:
        threading.Thread(target=self._serve, daemon=True).start()
        assert self._ready.wait(60), "counted backends did not start"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        @web.middleware
        async def count(request: web.Request, handler):
            parts = request.path.strip("/").split("/")
            if request.method == "POST" and parts[-1] == "verify":
                self.verify_calls[parts[-2]] += 1
            return await handler(request)

        async def serve() -> None:
            app = create_app(BackendsAppConfig(db_path=self.db_path, clock=SettableClock()))
            app.middlewares.append(count)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def counted(seeded_db: Path):
    backends = CountedBackends(seeded_db)
    backends.start()
    yield backends
    backends.stop()


def _action_server(stack, redis_url: str, counted: CountedBackends, sms: str) -> str:
    return stack.start_action_server(free_port(), redis_url, backends_env(counted.url),
                                     extra_env={"VERIFICATION_SMS": sms})


@pytest.fixture(scope="session")
def limits_redis_url(redis_url: str) -> str:
    """The limit tests' own database: the session's gateways consume the outbound stream (where
    the codes are requested) in database 0."""
    return redis_database(redis_url, VERIFICATION_LIMITS_DB)


@pytest.fixture(scope="session")
def last4_server(stack, limits_redis_url: str, counted: CountedBackends) -> str:
    """An action server without SMS codes (phone last-4 only)."""
    return _action_server(stack, limits_redis_url, counted, "off")


@pytest.fixture(scope="session")
def sms_server(stack, limits_redis_url: str, counted: CountedBackends) -> str:
    """An action server whose default verification is a one-time code by SMS."""
    return _action_server(stack, limits_redis_url, counted, "on")


def seeded_account(db_path: Path, index: int) -> tuple[str, str]:
    """(户号, mobile on file) of an active, non-demo seeded account; each test its own index,
    so the per-户号 limits of one test never touch another's."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT account_number, phone FROM accounts WHERE status = 'active' "
                          "ORDER BY account_number").fetchall()
    return [r for r in rows if r[0] not in DEMO][index]


@pytest.fixture
async def redis(redis_url: str):
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def limits_redis(limits_redis_url: str):
    client = aioredis.Redis.from_url(limits_redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def forget_limits(redis, *scopes: tuple[str, str]) -> None:
    """Remove the limit keys a test left (the session's Redis is shared)."""
    for scope, subject in scopes:
        key = f"pd:verify:{{verify}}:{scope}:{subject}"
        await redis.delete(key, f"{key}:strikes")


async def sent_codes(redis, conv: str) -> list[dict]:
    """The code requests the conversation caused on the outbound stream, oldest first."""
    entries = await redis.xrange(OUTBOUND_STREAM)
    return [fields for _, fields in entries if fields.get("requested_by") == conv]


def code_of(request: dict) -> str:
    return json.loads(request["params"])["code"]


def with_address(message: dict, address: str) -> dict:
    """The message as the gateway sends a web-chat one: with the customer's address."""
    return {**message, "metadata": {"client_address": address}}


async def give_code(url: str, conv: str, account: str, text: str, entities=None) -> dict:
    return await validate(
        url, conv, {"requested_slot": "verification_code", "account_number": account,
                    "verification_method": "sms", "verification_code": text},
        text, entities=entities, candidates=("verification_code",))


async def lookup_from(url: str, conv: str, account: str, address: str) -> dict:
    """The customer at ``address`` types ``account`` when asked for the 户号."""
    return await run_action(
        url, "validate_bind_account_form", sender_id=conv,
        slots={"requested_slot": "account_number", "account_number": account},
        events=[{"event": "user", "text": account},
                {"event": "slot", "name": "account_number", "value": account}],
        latest_message=with_address(
            user_message(account, "inform", [entity("account_number", account, account)]),
            address),
        active_loop=FORM)


# --- item 2: brute force ------------------------------------------------------------------------

async def test_fifty_concurrent_guesses_from_fresh_sessions_evaluate_at_most_the_limit(
        last4_server, sms_server, counted, seeded_db, limits_redis_url, limits_redis):
    account, mobile = seeded_account(seeded_db, 0)
    last4 = mobile[-4:]
    wrong = [f"{(int(last4) + i) % 10000:04d}" for i in range(1, 51)]
    results = await asyncio.gather(
        *(give_last4(last4_server, sender("guess"), account, guess) for guess in wrong))
    assert counted.verify_calls[account] == ACCOUNT_LIMIT
    outcomes = collections.Counter(slot_events(r).get("binding_outcome") for r in results)
    assert outcomes == {None: ACCOUNT_LIMIT - 1, "locked": 50 - ACCOUNT_LIMIT + 1}

    # The right answer afterwards is refused while the lock holds, and not even evaluated.
    owner = sender("owner")
    result = await give_last4(last4_server, owner, account, last4)
    assert slot_events(result)["binding_outcome"] == "locked"
    assert "该户号的验证已暂时锁定" in texts(result)[0]
    assert counted.verify_calls[account] == ACCOUNT_LIMIT
    async with customer_store(limits_redis_url) as store:
        assert await store.get_binding(owner) is None

    # With SMS configured the real owner still has a way in: a code to the phone on file.
    result = await give_last4(sms_server, owner, account, last4)
    assert slot_events(result)["verification_method"] == "sms"
    assert counted.verify_calls[account] == ACCOUNT_LIMIT
    (request,) = await sent_codes(limits_redis, owner)
    assert request["conversation_id"] == f"sms:{mobile}"
    result = await give_code(sms_server, owner, account, code_of(request))
    assert slot_events(result)["binding_outcome"] == "verified"
    async with customer_store(limits_redis_url) as store:
        assert await store.get_binding(owner) == account
    await forget_limits(limits_redis, (ACCOUNT, account))


async def test_unknown_accounts_are_counted_per_address_across_sessions(
        last4_server, backends_url, limits_redis):
    unknown = await unknown_account(backends_url)
    # Every probe from a fresh session, each from another address of one IPv6 /64.
    for i in range(1, LIMITS.address.max_count + 1):
        result = await lookup_from(last4_server, sender("probe"), unknown, f"2001:db8:5:7::{i:x}")
        assert slot_events(result)["account_number"] is None
    assert slot_events(result)["binding_outcome"] == "locked"
    result = await lookup_from(last4_server, sender("probe"), unknown, "2001:db8:5:7::abcd")
    assert slot_events(result)["binding_outcome"] == "locked"
    assert "锁定" in texts(result)[0]
    # another customer elsewhere is not affected
    result = await lookup_from(last4_server, sender("probe"), unknown, "2001:db8:5:8::1")
    assert "binding_outcome" not in slot_events(result)
    assert "还可以尝试" in texts(result)[0]
    await forget_limits(limits_redis, (ADDRESS, "2001:db8:5:7::/64"), (ADDRESS, "2001:db8:5:8::/64"))


async def test_a_locked_address_cannot_start_binding(last4_server, backends_url, limits_redis):
    address = "198.51.100.23"
    unknown = await unknown_account(backends_url)
    for _ in range(LIMITS.address.max_count):
        await lookup_from(last4_server, sender("probe"), unknown, address)
    result = await run_action(
        last4_server, "action_start_binding", sender_id=sender("probe"),
        latest_message=with_address(user_message("绑定户号", "bind_account"), address))
    assert slot_events(result)["needs_binding"] is False
    assert "锁定" in texts(result)[0]
    await forget_limits(limits_redis, (ADDRESS, address))


# --- item 2: one-time codes ---------------------------------------------------------------------

async def test_a_code_is_the_default_and_is_sent_to_the_phone_on_file(sms_server, seeded_db,
                                                                      limits_redis):
    account, mobile = seeded_account(seeded_db, 1)
    conv = sender("code")
    result = await give_account(sms_server, conv, account)
    events = slot_events(result)
    assert events["account_number"] == account
    assert events["verification_method"] == "sms"
    assert events["requested_slot"] == "verification_code"
    (request,) = await sent_codes(limits_redis, conv)
    params = json.loads(request.pop("params"))
    assert request == {"conversation_id": f"sms:{mobile}", "purpose": "notice",
                       "kind": "verification_code", "urgent": "1", "requested_by": conv}
    assert params["minutes"] == "5" and len(params["code"]) == 6 and params["code"].isdigit()
    asked = await run_action(sms_server, "action_ask_bind_account_form_verification_code",
                             sender_id=conv, slots={"account_number": account})
    text = texts(asked)[0]
    assert "尾号****" in text and "6位验证码" in text
    assert mobile[-4:] not in text.replace(account[-4:], "")  # the fallback's secret stays secret
    titles = [b["payload"] for b in asked["responses"][0]["buttons"]]
    assert titles == ['/inform{"binding_option":"resend"}', '/inform{"binding_option":"last4"}']


async def test_a_wrong_code_counts_and_the_right_one_binds_once(sms_server, seeded_db,
                                                               limits_redis_url, limits_redis):
    account, _ = seeded_account(seeded_db, 2)
    conv = sender("code")
    await give_account(sms_server, conv, account)
    code = code_of((await sent_codes(limits_redis, conv))[-1])
    wrong = f"{(int(code) + 1) % 10 ** 6:06d}"
    result = await give_code(sms_server, conv, account, wrong)
    assert "验证码不正确" in texts(result)[0] and "还可以尝试2次" in texts(result)[0]
    assert slot_events(result)["verification_code"] is None
    async with customer_store(limits_redis_url) as store:
        assert await store.attempts_counted(CONVERSATION, conv) == 1
        assert await store.get_binding(conv) is None
    result = await give_code(sms_server, conv, account, f"验证码是{code}")
    events = slot_events(result)
    assert events["binding_outcome"] == "verified" and events["verification_code"] == "******"
    async with customer_store(limits_redis_url) as store:
        assert await store.get_binding(conv) == account
        assert await store.attempts_counted(CONVERSATION, conv) == 0
    # single use: the same code again is not accepted
    result = await give_code(sms_server, conv, account, code)
    assert "binding_outcome" not in slot_events(result)
    assert "验证码已失效" in texts(result)[0]


async def test_no_code_received_falls_back_to_the_phone_last4(sms_server, seeded_db, limits_redis):
    account, mobile = seeded_account(seeded_db, 3)
    conv = sender("code")
    await give_account(sms_server, conv, account)
    result = await give_code(sms_server, conv, account, "没收到验证码")
    events = slot_events(result)
    assert events["verification_method"] == "last4"
    assert events["requested_slot"] == "phone_last4"
    payload = '/inform{"binding_option":"last4"}'
    result = await give_code(sms_server, conv, account, payload,
                             entities=[entity("binding_option", "last4")])
    assert slot_events(result)["requested_slot"] == "phone_last4"
    result = await validate(
        sms_server, conv, {"requested_slot": "phone_last4", "account_number": account,
                           "verification_method": "last4", "phone_last4": mobile[-4:]},
        mobile[-4:], candidates=("phone_last4",))
    assert slot_events(result)["binding_outcome"] == "verified"


async def test_code_sends_are_rate_limited(sms_server, seeded_db, limits_redis):
    account, _ = seeded_account(seeded_db, 4)
    conv = sender("code")
    await give_account(sms_server, conv, account)
    for _ in range(LIMITS.codes_per_conversation.max_count - 1):
        result = await give_code(sms_server, conv, account, "重新发送验证码")
        assert slot_events(result)["verification_method"] == "sms"
    result = await give_code(sms_server, conv, account, "重新发送")
    assert "验证码发送过于频繁" in texts(result)[0]
    assert slot_events(result)["verification_method"] == "last4"
    assert len(await sent_codes(limits_redis, conv)) == LIMITS.codes_per_conversation.max_count
    await forget_limits(limits_redis, ("codes-account", account))


# --- items 5, 6, 14 -----------------------------------------------------------------------------

async def test_action_server_logs_only_a_prefix_of_web_session_ids(action_server_url, stack,
                                                                   redis_url):
    account, last4 = demo.COMMERCIAL, demo.COMMERCIAL_PHONE[-4:]
    conv = sender("log")
    result = await give_last4(action_server_url, conv, account, last4)
    assert slot_events(result)["binding_outcome"] == "verified"
    log = (stack.log_dir / "actions.log").read_text(errors="replace")
    assert f"{conv[:12]}… bound account ******{account[-4:]}" in log
    assert conv[12:] not in log


async def test_unbinding_by_the_page_button_payload(action_server_url, redis_url):
    account = demo.RESIDENTIAL_TOU
    conv = sender("unbind")
    await bind(redis_url, conv, account)
    payload = '/bind_account{"binding_option":"unbind"}'
    result = await run_action(
        action_server_url, "action_start_binding", sender_id=conv,
        latest_message=user_message(payload, "bind_account", [entity("binding_option", "unbind")]))
    assert "已为您解除户号" in texts(result)[0]
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) is None


async def test_binding_another_account_drops_the_old_accounts_reminders(action_server_url,
                                                                        redis_url):
    old, new, new_last4 = demo.RESIDENTIAL_TOU, demo.OVERDUE, demo.OVERDUE_PHONE[-4:]
    conv = sender("switch")
    await bind(redis_url, conv, old)
    async with customer_store(redis_url) as store:
        await store.subscribe_reminder(conv, old)
    result = await give_last4(action_server_url, conv, new, new_last4)
    assert slot_events(result)["binding_outcome"] == "verified"
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) == new
        assert await store.subscriptions_of(conv) == {}
        assert conv not in await store.subscribers_of(old, "bill_due")


async def test_web_bindings_expire_when_idle_and_failure_keys_expire(action_server_url, redis):
    account, last4 = demo.ENTERPRISE, demo.ENTERPRISE_PHONE[-4:]
    conv = sender("ttl")
    await give_last4(action_server_url, conv, account, f"{(int(last4) + 1) % 10000:04d}")
    await give_last4(action_server_url, conv, account, last4)
    idle = LIMITS.web_idle_seconds
    assert idle - 10 <= await redis.ttl(f"pd:binding:{conv}") <= idle
    keys = [k async for k in redis.scan_iter(match=f"*{conv}*")]
    assert keys and all([await redis.ttl(k) > 0 for k in keys]), keys
    # the failure counted on the 户号 and service-wide expires too
    for scope, subject in ((ACCOUNT, account), (SERVICE, "all")):
        assert await redis.ttl(f"pd:verify:{{verify}}:{scope}:{subject}") > 0
