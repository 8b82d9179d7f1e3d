"""Console users, sessions and login limits against a real Redis, with a pinned clock."""
from __future__ import annotations

import asyncio
import time

import pytest

from channels.console.auth import LoginLimiter, UserExists, UserStore, migrate_legacy_keys, parse_queues
from channels.console.sessions import SessionStore
from tests.channels.console.conftest import CHEAP_HASHER, PASSWORD
from tests.channels.delivery_support import Clock


async def test_users_are_stored_with_argon2id_hashes_and_verified(credis):
    users = UserStore(credis, hasher=CHEAP_HASHER)
    user = await users.add("wang", "agent", ("general", "vip"), PASSWORD, "王工")
    assert (user.role, user.queues, user.display_name) == ("agent", ("general", "vip"), "王工")
    stored = await credis.hget("pd:{console}:user:wang", "password")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert await users.verify("wang", PASSWORD) == user
    assert await users.verify("wang", PASSWORD + "x") is None
    started = time.perf_counter()
    assert await users.verify("nobody", PASSWORD) is None  # an unknown name: a dummy hash, None
    unknown = time.perf_counter() - started
    # The dummy costs what a default-cost hash costs (tens of ms), not a quick "no such user".
    assert unknown > 0.02
    with pytest.raises(UserExists):
        await users.add("wang", "agent", ("general",), PASSWORD)
    for bad in (("Wang!", "agent", ("general",), PASSWORD), ("zhao", "admin", (), PASSWORD),
                ("zhao", "agent", ("Bad Queue",), PASSWORD), ("zhao", "agent", ("general",), "short")):
        with pytest.raises(ValueError):
            await users.add(*bad)
    assert [u.name for u in await users.list()] == ["wang"]
    assert await users.queues() == ["general", "vip"]


async def test_users_update_passwd_and_remove(credis):
    users = UserStore(credis, hasher=CHEAP_HASHER)
    await users.add("wang", "agent", ("general",), PASSWORD)
    updated = await users.update("wang", queues=("vip", "manager:m001"), display_name="王工")
    assert updated.queues == ("vip", "manager:m001") and updated.display_name == "王工"
    assert "manager:m001" in await users.queues()
    assert await users.set_password("wang", "another-secret")
    assert await users.verify("wang", PASSWORD) is None and await users.verify("wang", "another-secret")
    assert await users.remove("wang") and await users.get("wang") is None
    assert not await users.remove("wang") and await users.update("wang", role="agent") is None
    assert parse_queues(" general, vip ,general") == ("general", "vip")
    with pytest.raises(ValueError):
        parse_queues("general,VIP")


async def test_a_session_slides_while_used_and_ends_when_idle(credis):
    clock = Clock(1_800_000_000.0)
    sessions = SessionStore(credis, idle_seconds=600, max_seconds=3600, clock=clock)
    token, session = await sessions.create("wang")
    assert await credis.exists(f"pd:{{console}}:session:{token}") == 0  # only a hash of the token
    for _ in range(3):
        clock.now += 500  # within the idle time: each use slides it
        assert (await sessions.get(token)).user == "wang"
    assert 0 < await credis.ttl(next(iter(await credis.keys("pd:{console}:session:*")))) <= 600
    clock.now += 601
    assert await sessions.get(token) is None
    assert await credis.keys("pd:{console}:session:*") == []  # forgotten at once
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("") and not session.csrf_ok(None)
    assert not session.csrf_ok(session.csrf[:-1] + "x")


async def test_a_session_ends_at_its_absolute_lifetime_even_when_used(credis):
    clock = Clock(1_800_000_000.0)
    sessions = SessionStore(credis, idle_seconds=600, max_seconds=1500, clock=clock)
    token, _ = await sessions.create("wang")
    clock.now += 590
    assert await sessions.get(token)
    clock.now += 590
    session = await sessions.get(token)
    assert session.expires_at == 1_800_001_500.0
    # The Redis key never outlives the absolute end either.
    assert await credis.ttl(next(iter(await credis.keys("pd:{console}:session:*")))) <= 1500 - 1180
    clock.now += 330  # 1510 s after the login, 330 s after the last use
    assert await sessions.get(token) is None


async def test_logout_and_ending_all_sessions_of_a_user(credis):
    sessions = SessionStore(credis, idle_seconds=600, max_seconds=3600)
    first, _ = await sessions.create("wang")
    second, _ = await sessions.create("wang")
    other, _ = await sessions.create("li")
    await sessions.delete(first)
    assert await sessions.get(first) is None and await sessions.get(second)
    assert await sessions.delete_user("wang") == 1
    assert await sessions.get(second) is None and await sessions.get(other)
    assert await sessions.get("x" * 500) is None and await sessions.get("") is None


async def test_failed_logins_are_limited_per_name_and_per_address(credis):
    limiter = LoginLimiter(credis, per_user=3, per_address=5, window_seconds=900)
    assert [await limiter.reserve("wang", "10.0.0.1") for _ in range(3)] == [0, 0, 0]  # 3 failures
    assert 890 <= await limiter.reserve("wang", "10.0.0.1") <= 900
    assert await limiter.reserve("wang", "10.0.0.2") > 0   # the name, from anywhere
    assert await limiter.reserve("li", "10.0.0.1") == 0    # the address: 4 attempts < 5
    assert await limiter.reserve("zhao", "10.0.0.1") == 0  # the 5th
    assert await limiter.reserve("zhou", "10.0.0.1") > 0   # 5 failures from one address
    assert await limiter.reserve("zhou", "10.0.0.9") == 0
    await limiter.succeeded("zhou", "10.0.0.9")  # a success: the name cleared, its attempt taken back
    assert await credis.get("pd:{console}:login:user:zhou") is None
    assert await credis.get("pd:{console}:login:address:10.0.0.9") == "0"
    assert await credis.get("pd:{console}:login:address:10.0.0.1") == "5"


async def test_parallel_guesses_cannot_pass_the_limit_together(credis):
    limiter = LoginLimiter(credis, per_user=3, per_address=100, window_seconds=900)
    waits = await asyncio.gather(*(limiter.reserve("wang", f"10.0.0.{i}") for i in range(20)))
    assert waits.count(0) == 3


async def test_users_sessions_and_login_limits_on_a_redis_cluster(redis_cluster_url):
    from integrations.redis_url import async_client

    cluster = async_client(redis_cluster_url, decode_responses=True)
    try:
        users = UserStore(cluster, hasher=CHEAP_HASHER)
        name = f"c{int(time.time() * 1000) % 10**9}"
        await users.add(name, "agent", ("general",), PASSWORD)  # one transaction, three keys
        assert (await users.verify(name, PASSWORD)).name == name
        sessions = SessionStore(cluster, idle_seconds=600, max_seconds=3600)
        token, _ = await sessions.create(name)
        assert (await sessions.get(token)).user == name
        assert await sessions.delete_user(name) == 1 and await sessions.get(token) is None
        limiter = LoginLimiter(cluster, 2, 10, 600)
        assert await limiter.reserve(name, "10.0.0.7") == 0
        assert await users.remove(name)
    finally:
        await cluster.aclose()


async def test_users_and_queues_of_the_names_before_the_hash_tag_move_and_old_sessions_end(credis):
    await credis.hset("pd:console:user:li", mapping={"role": "agent", "queues": "general", "password": "x"})
    await credis.sadd("pd:console:users", "li")
    await credis.sadd("pd:console:queues", "general", "vip")
    await credis.hset("pd:console:session:abc", mapping={"user": "li"})
    await credis.sadd("pd:console:sessions:li", "pd:console:session:abc")
    assert await migrate_legacy_keys(credis) == 3
    assert await migrate_legacy_keys(credis) == 0
    assert await credis.hget("pd:{console}:user:li", "role") == "agent"
    assert await credis.smembers("pd:{console}:users") == {"li"}
    assert await credis.smembers("pd:{console}:queues") == {"general", "vip"}
    assert await credis.keys("pd:console:*") == []
