"""Per-user in-order processing across dispatcher instances sharing a real Redis."""
from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
from pathlib import Path
from collections import defaultdict

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from channels.dispatcher import Dispatcher


@pytest.fixture
async def redis(redis_url):
    # Blocking pool, as the gateway uses: bursts wait for a connection instead of failing.
    client = Redis(connection_pool=BlockingConnectionPool.from_url(redis_url, max_connections=50, timeout=10))
    yield client
    await client.aclose()


class Recorder:
    """Handler recording which jobs ran, where, and whether a user ever ran twice at once."""

    def __init__(self, name: str, log: dict[str, list[int]], busy: set[str], overlaps: list[str]) -> None:
        self.name, self.log, self.busy, self.overlaps = name, log, busy, overlaps
        self.count = 0

    async def __call__(self, user: str, job: dict) -> None:
        if user in self.busy:
            self.overlaps.append(user)
        self.busy.add(user)
        try:
            await asyncio.sleep(random.uniform(0, 0.01))
            self.log[user].append(job["n"])
            self.count += 1
        finally:
            self.busy.discard(user)


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_200_users_on_two_instances_every_job_once_in_order(redis):
    ns = "test:dispatch:" + secrets.token_hex(4)
    log: dict[str, list[int]] = defaultdict(list)
    busy: set[str] = set()
    overlaps: list[str] = []
    handlers = [Recorder("a", log, busy, overlaps), Recorder("b", log, busy, overlaps)]
    instances = [Dispatcher(redis, h, concurrency=32, namespace=ns, block_ms=200) for h in handlers]
    for d in instances:
        await d.start()
    try:
        users = [f"o{i:05d}" for i in range(200)]

        async def talk(user: str) -> None:
            for n in range(5):  # alternate instances, like a load balancer would
                await instances[n % 2].enqueue(user, {"n": n})
                await asyncio.sleep(random.uniform(0, 0.005))

        await asyncio.gather(*(talk(u) for u in users))
        await wait_until(lambda: sum(len(v) for v in log.values()) == 1000)
        await asyncio.sleep(0.2)
        assert all(log[u] == [0, 1, 2, 3, 4] for u in users)
        assert overlaps == []
        assert handlers[0].count > 0 and handlers[1].count > 0  # both instances did work
        assert await redis.scard(instances[0].active_key) == 0
        assert await redis.xlen(instances[0].ready_key) == 0
    finally:
        for d in instances:
            await d.stop()


async def test_a_failing_job_does_not_block_the_rest_of_the_conversation(redis):
    ns = "test:dispatch:" + secrets.token_hex(4)
    seen: list[int] = []

    async def handler(user: str, job: dict) -> None:
        if job["n"] == 1:
            raise RuntimeError("boom")
        if job["n"] == 2:
            await asyncio.sleep(10)  # exceeds the job timeout
        seen.append(job["n"])

    d = Dispatcher(redis, handler, namespace=ns, job_timeout_seconds=0.3, block_ms=200)
    await d.start()
    try:
        for n in range(4):
            await d.enqueue("o_user", {"n": n})
        await wait_until(lambda: seen == [0, 3], timeout=5)
    finally:
        await d.stop()


CRASHING_INSTANCE = """
import asyncio, sys
from redis.asyncio import Redis
from channels.dispatcher import Dispatcher

async def main():
    redis = Redis.from_url(sys.argv[1])
    async def stuck(user, job):
        print("started", flush=True)
        await asyncio.sleep(3600)
    d = Dispatcher(redis, stuck, namespace=sys.argv[2], job_timeout_seconds=30, claim_idle_seconds=60,
                   block_ms=100)
    await d.start()
    for n in range(3):
        await d.enqueue("o_dead", {"n": n})
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_conversation_of_a_killed_instance_is_claimed_by_another_and_its_job_recovered(redis, redis_url):
    ns = "test:dispatch:" + secrets.token_hex(4)
    root = Path(__file__).resolve().parents[2]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_INSTANCE, redis_url, ns, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)}, stdout=asyncio.subprocess.PIPE)
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"started"
    finally:
        proc.kill()  # dies with job 0 in hand and jobs 1, 2 queued: no chance to hand anything back
        await proc.wait()
    done_by_b: list[int] = []
    interrupted: list[int] = []

    async def healthy(user: str, job: dict) -> None:
        done_by_b.append(job["n"])

    async def answer_interrupted(user: str, job: dict) -> None:
        interrupted.append(job["n"])

    b = Dispatcher(redis, healthy, namespace=ns, on_interrupted=answer_interrupted, claim_idle_seconds=1.0,
                   block_ms=100)
    await b.start()
    try:
        await wait_until(lambda: done_by_b == [1, 2], timeout=10)
        await asyncio.sleep(0.3)
        assert interrupted == [0]  # the job in hand at the kill is answered, not lost nor re-run
        assert await redis.scard(b.active_key) == 0
        assert await redis.exists(b.processing_key("o_dead")) == 0
    finally:
        await b.stop()


async def test_graceful_stop_hands_conversations_back_at_once(redis):
    ns = "test:dispatch:" + secrets.token_hex(4)
    started = asyncio.Event()
    done_by_b: list[int] = []

    async def slow(user: str, job: dict) -> None:
        started.set()
        await asyncio.sleep(3600)

    async def healthy(user: str, job: dict) -> None:
        done_by_b.append(job["n"])

    async def answer_interrupted(user: str, job: dict) -> None:
        done_by_b.append(-job["n"] - 1)

    a = Dispatcher(redis, slow, namespace=ns, claim_idle_seconds=600, block_ms=100)
    await a.start()
    for n in range(3):
        await a.enqueue("o_rolling", {"n": n})
    await asyncio.wait_for(started.wait(), 5)
    await a.stop(grace_seconds=0.1)  # rolling restart: job 0 is cut short
    b = Dispatcher(redis, healthy, namespace=ns, on_interrupted=answer_interrupted, claim_idle_seconds=600,
                   block_ms=100)
    await b.start()
    try:
        # Long before the 600 s claim; job 0 (cut short) first, answered as interrupted.
        await wait_until(lambda: done_by_b == [-1, 1, 2], timeout=5)
    finally:
        await b.stop()


async def test_stop_waits_for_a_job_as_long_as_the_job_timeout_by_default(redis):
    ns = "test:dispatch:" + secrets.token_hex(4)
    started = asyncio.Event()
    finished: list[int] = []
    interrupted: list[int] = []

    async def slow(user: str, job: dict) -> None:
        started.set()
        await asyncio.sleep(5.5)  # longer than the old fixed 5 s grace, shorter than the job timeout
        finished.append(job["n"])

    async def answer_interrupted(user: str, job: dict) -> None:
        interrupted.append(job["n"])

    d = Dispatcher(redis, slow, namespace=ns, on_interrupted=answer_interrupted, job_timeout_seconds=6.0,
                   block_ms=100)
    assert d.stop_grace_seconds >= 6.0
    await d.start()
    await d.enqueue("o_deploy", {"n": 0})
    await asyncio.wait_for(started.wait(), 5)
    await d.stop()
    assert finished == [0] and interrupted == []
    assert await redis.exists(d.processing_key("o_deploy")) == 0


async def test_a_stopping_instance_finishes_its_job_and_leaves_the_rest_to_another(redis):
    ns = "test:dispatch:" + secrets.token_hex(4)
    started = asyncio.Event()
    release = asyncio.Event()
    done: list[tuple[str, int]] = []

    async def slow(user: str, job: dict) -> None:
        started.set()
        await release.wait()
        done.append(("a", job["n"]))

    async def healthy(user: str, job: dict) -> None:
        done.append(("b", job["n"]))

    async def answer_interrupted(user: str, job: dict) -> None:
        done.append(("interrupted", job["n"]))

    a = Dispatcher(redis, slow, namespace=ns, claim_idle_seconds=600, block_ms=100)
    await a.start()
    for n in range(3):
        await a.enqueue("o_leaving", {"n": n})
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(a.stop())
    await asyncio.sleep(0.2)
    release.set()  # job 0 completes inside the grace period
    await asyncio.wait_for(stopping, 5)
    b = Dispatcher(redis, healthy, namespace=ns, on_interrupted=answer_interrupted, claim_idle_seconds=600,
                   block_ms=100)
    await b.start()
    try:
        await wait_until(lambda: len(done) == 3, timeout=5)
        assert done == [("a", 0), ("b", 1), ("b", 2)]
    finally:
        await b.stop()


async def test_failed_and_timed_out_jobs_go_to_on_interrupted_and_the_queue_goes_on(redis):
    ns = "test:dispatch:" + secrets.token_hex(4)
    events: list[str] = []

    async def handler(user: str, job: dict) -> None:
        if job["n"] == 1:
            raise RuntimeError("boom")
        if job["n"] == 2:
            await asyncio.sleep(10)
        events.append(f"done {job['n']}")

    async def answer_interrupted(user: str, job: dict) -> None:
        events.append(f"interrupted {job['n']}")

    d = Dispatcher(redis, handler, namespace=ns, on_interrupted=answer_interrupted, job_timeout_seconds=0.3,
                   block_ms=100)
    await d.start()
    try:
        for n in range(4):
            await d.enqueue("o_user", {"n": n})
        await wait_until(lambda: len(events) == 4, timeout=5)
        assert events == ["done 0", "interrupted 1", "interrupted 2", "done 3"]
        assert await redis.exists(d.processing_key("o_user")) == 0
    finally:
        await d.stop()


async def test_starts_without_redis_and_recovers_when_it_appears(stack):
    from tests.support.ports import free_port

    port = free_port()
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    seen: list[int] = []

    async def handler(user: str, job: dict) -> None:
        seen.append(job["n"])

    d = Dispatcher(client, handler, namespace="test:dispatch:" + secrets.token_hex(4), block_ms=100)
    await d.start()  # no Redis yet: must not raise
    try:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(stack.start_embedded_redis, port)
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            try:
                await d.enqueue("o_late", {"n": 1})
                break
            except Exception:  # noqa: BLE001 - Redis still starting
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.2)
        await wait_until(lambda: seen == [1], timeout=20)
    finally:
        await d.stop()
        await client.aclose()
