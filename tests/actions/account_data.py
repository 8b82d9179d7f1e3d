"""Helpers of the account/billing/reminder action tests: reference accounts, Redis, backend reads.

The phone on file is never returned by any backend endpoint (by design), so the tests read the
reference accounts and their phones from the session's backends SQLite file, the backends' own
seed data. Everything else is read over HTTP like any client would.
"""
from __future__ import annotations

import contextlib
import sqlite3
import uuid
from typing import Any, AsyncIterator

import aiohttp
import redis.asyncio as aioredis

from integrations.customer_store import CustomerStore

BUSY_TEXT = "系统繁忙，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"

_accounts_cache: dict[str, list[tuple[str, str]]] = {}


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


def _accounts_table(db: sqlite3.Connection) -> tuple[str, str, str, bool]:
    """(table, account column, phone column, has status) of the accounts table."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
        phone = next((c for c in columns if "phone" in c.lower()), None)
        if "account_number" in columns and phone:
            return table, "account_number", phone, "status" in columns
    raise AssertionError(f"no accounts table with a phone column in the backends DB: {tables}")


async def reference_accounts(stack) -> list[tuple[str, str]]:
    """Active reference accounts as ``(account_number, phone_last4)``, in a fixed order."""
    path = stack.run_dir / "backends.sqlite3"
    key = str(path)
    if key not in _accounts_cache:
        assert path.exists(), "start the backends (backends_url fixture) first"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            table, account, phone, has_status = _accounts_table(db)
            where = " WHERE status = 'active'" if has_status else ""
            rows = db.execute(
                f'SELECT "{account}", "{phone}" FROM "{table}"{where} ORDER BY "{account}"'
            ).fetchall()
        finally:
            db.close()
        _accounts_cache[key] = [(str(a), str(p)[-4:]) for a, p in rows if p]
        assert len(_accounts_cache[key]) >= 3, "the seed should have several active accounts"
    return _accounts_cache[key]


async def unknown_account(stack) -> str:
    """A well-formed 户号 that the reference data does not have."""
    known = {a for a, _ in await reference_accounts(stack)}
    path = stack.run_dir / "backends.sqlite3"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        table, account, _, _ = _accounts_table(db)
        known |= {str(r[0]) for r in db.execute(f'SELECT "{account}" FROM "{table}"')}
    finally:
        db.close()
    for n in range(3999999999, 3000000000, -7919):
        if str(n) not in known:
            return str(n)
    raise AssertionError("no free account number")


def wrong_last4(last4: str) -> str:
    """Four digits that are not ``last4``."""
    return f"{(int(last4) + 1111) % 10000:04d}"
