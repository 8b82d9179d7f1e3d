"""KeyedLocks: the in-process FIFO turn per key shared by the router and the web chat."""
from __future__ import annotations

import asyncio

import pytest

from channels.keyed_lock import KeyedLocks


async def test_turns_of_one_key_run_one_at_a_time_in_arrival_order():
    locks, order = KeyedLocks(), []
    release_first = asyncio.Event()

    async def turn(name: str) -> None:
        async with await locks.acquire("conversation"):
            order.append(f"{name} in")
            if name == "first":
                await release_first.wait()
            order.append(f"{name} out")

    tasks = [asyncio.create_task(turn(name)) for name in ("first", "second", "third")]
    await asyncio.sleep(0)
    assert locks.users("conversation") == 3
    release_first.set()
    await asyncio.gather(*tasks)
    assert order == ["first in", "first out", "second in", "second out", "third in", "third out"]
    assert locks.users("conversation") == 0 and not locks._entries  # forgotten when unused


async def test_other_keys_do_not_wait():
    locks = KeyedLocks()
    held = await locks.acquire("a")
    other = await asyncio.wait_for(locks.acquire("b"), 1)
    other.release()
    held.release()
    assert not locks._entries


async def test_a_timed_out_waiter_leaves_no_trace_and_a_turn_may_end_in_another_task():
    locks = KeyedLocks()
    held = await locks.acquire("k")
    with pytest.raises(asyncio.TimeoutError):
        await locks.acquire("k", timeout=0.01)
    assert locks.users("k") == 1
    waiter = asyncio.create_task(locks.acquire("k"))
    await asyncio.sleep(0)  # the waiter queues up
    assert locks.users("k") == 2
    asyncio.get_running_loop().call_soon(held.release)  # released outside the holder's task
    second = await asyncio.wait_for(waiter, 1)
    assert locks.users("k") == 1
    second.release()
    assert not locks._entries
