"""The reference backends process masks 户号 in its log lines, request paths and tracebacks
included (``python -m backends`` as the stack runs it, a real failure of its database)."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import aiohttp

from scripts.stack import Stack, free_port


async def test_an_unhandled_error_on_an_account_path_is_logged_masked(stack: Stack, seeded_db: Path,
                                                                      tmp_path: Path):
    db_path = tmp_path / "broken.sqlite3"
    shutil.copy(seeded_db, db_path)
    url = stack.start_backends(free_port(), db_path)
    backends = stack.processes[-1]
    try:
        with sqlite3.connect(db_path) as db:  # the database loses a table under the running service
            db.execute("DROP TABLE accounts")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/billing/accounts/3201234567/bills") as response:
                assert response.status == 500
                assert "3201234567" not in await response.text()
    finally:
        stack.processes.remove(backends)
        backends.stop()
    log = backends.log_path.read_text(errors="replace")
    assert "unhandled error on GET /billing/accounts/******4567/bills" in log
    assert "Traceback (most recent call last)" in log and "no such table: accounts" in log
    assert "3201234567" not in log
