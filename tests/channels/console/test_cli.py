"""``python -m channels.console`` as an operator runs it (a subprocess) against a real Redis."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from channels.console.auth import UserStore
from channels.console.sessions import SessionStore

ROOT = Path(__file__).resolve().parents[3]


def cli(redis_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "channels.console", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


async def test_users_add_list_passwd_remove(console_redis_url, credis):
    added = cli(console_redis_url, "users", "add", "wang", "--role", "agent", "--queues", "general,vip",
                "--display-name", "王工", "--password-stdin", stdin="a-long-password\n")
    assert added.returncode == 0, added.stderr
    assert "a-long-password" not in added.stdout + added.stderr
    supervisor = cli(console_redis_url, "users", "add", "boss", "--role", "supervisor", "--password-stdin",
                     stdin="another-password\n")
    assert supervisor.returncode == 0, supervisor.stderr
    listed = cli(console_redis_url, "users", "list")
    assert listed.stdout.splitlines() == ["boss\tsupervisor\t-\tboss", "wang\tagent\tgeneral,vip\t王工"]
    as_json = json.loads(cli(console_redis_url, "users", "list", "--json").stdout)
    assert as_json[1] == {"name": "wang", "role": "agent", "queues": ["general", "vip"], "display_name": "王工"}
    users = UserStore(credis)
    assert (await users.verify("wang", "a-long-password")).queues == ("general", "vip")

    duplicate = cli(console_redis_url, "users", "add", "wang", "--queues", "general", "--password-stdin",
                    stdin="a-long-password\n")
    assert duplicate.returncode == 2 and "exists" in duplicate.stderr
    short = cli(console_redis_url, "users", "add", "zhao", "--queues", "general", "--password-stdin",
                stdin="short\n")
    assert short.returncode == 2 and await users.get("zhao") is None
    no_queue = cli(console_redis_url, "users", "add", "zhao", "--password-stdin", stdin="long-enough-1\n")
    assert no_queue.returncode == 2 and "--queues" in no_queue.stderr

    sessions = SessionStore(credis, 600, 3600)
    token, _ = await sessions.create("wang")
    changed = cli(console_redis_url, "users", "passwd", "wang", "--password-stdin", stdin="a-new-password\n")
    assert changed.returncode == 0 and "1 session(s) ended" in changed.stdout
    assert await sessions.get(token) is None
    assert await users.verify("wang", "a-new-password") and not await users.verify("wang", "a-long-password")
    updated = cli(console_redis_url, "users", "update", "wang", "--queues", "vip,manager:m001")
    assert updated.returncode == 0 and (await users.get("wang")).queues == ("vip", "manager:m001")
    removed = cli(console_redis_url, "users", "remove", "wang")
    assert removed.returncode == 0 and await users.get("wang") is None
    assert cli(console_redis_url, "users", "remove", "wang").returncode == 2


async def test_queues_add_and_list(console_redis_url, credis):
    assert cli(console_redis_url, "queues", "add", "manager:m007").returncode == 0
    assert cli(console_redis_url, "queues", "add", "Bad Queue").returncode == 2
    cli(console_redis_url, "users", "add", "wang", "--queues", "general,manager:m007", "--password-stdin",
        stdin="a-long-password\n")
    listed = cli(console_redis_url, "queues", "list").stdout.splitlines()
    assert listed == ["general\twang", "manager:m007\twang", "vip\t-"]


def test_an_unreachable_redis_is_one_clear_line():
    result = cli("redis://127.0.0.1:1/0", "users", "list")
    assert result.returncode == 1 and "not reachable" in result.stderr and "Traceback" not in result.stderr
