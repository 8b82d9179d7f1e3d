"""Helpers of the account/billing/reminder action tests: reference accounts, Redis, backend reads.

The phone on file is never returned by any backend endpoint (by design), so the tests take the
reference accounts and their phones from backends/demo_accounts.py, the accounts the seed always
creates. Everything else (bills, balances, names) is read over HTTP like any client would.
"""
from __future__ import annotations

import contextlib
import uuid
from typing import Any, AsyncIterator

import aiohttp
import redis.asyncio as aioredis

from backends import demo_accounts as demo
from integrations.customer_store import CustomerStore

BUSY_TEXT = "系统繁忙，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"

def sender(topic: str) -> str:
    """A fresh web conversation id."""
    return f"web:test-{topic}-{uuid.uuid4().hex[:10]}"


async def backend_get(backends_url: str, path: str, **params: Any) -> Any:
    """GET a reference-backends path (e.g. ``/billing/accounts/3201234567``); asserts 200."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{backends_url}{path}", params=params) as response:
            assert response.status == 200, (path, response.status, await response.text())
            return await response.json()


@contextlib.asynccontextmanager
async def customer_store(redis_url: str) -> AsyncIterator[CustomerStore]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield CustomerStore(client)
    finally:
        await client.aclose()


async def bind(redis_url: str, conversation: str, account: str) -> None:
    """Bind as a successful verification would (tests of what a bound conversation sees)."""
    async with customer_store(redis_url) as store:
        await store.bind(conversation, account)


# (户号, phone last-4) of the documented reference accounts, all active:
# residential 阶梯+峰谷 (late-year bills reach tier 2), residential with arrears, commercial
# prepaid, enterprise.
ACCOUNTS: list[tuple[str, str]] = [
    (demo.RESIDENTIAL_TOU, demo.RESIDENTIAL_TOU_PHONE[-4:]),
    (demo.OVERDUE, demo.OVERDUE_PHONE[-4:]),
    (demo.COMMERCIAL, demo.COMMERCIAL_PHONE[-4:]),
    (demo.ENTERPRISE, demo.ENTERPRISE_PHONE[-4:]),
]


async def unknown_account(backends_url: str) -> str:
    """A well-formed 户号 the billing backend answers 404 for."""
    async with aiohttp.ClientSession() as session:
        for n in range(3999999999, 3000000000, -7919):
            async with session.get(f"{backends_url}/billing/accounts/{n}") as response:
                if response.status == 404:
                    return str(n)
    raise AssertionError("no free account number")


def wrong_last4(last4: str) -> str:
    """Four digits that are not ``last4``."""
    return f"{(int(last4) + 1111) % 10000:04d}"
