"""``python -m channels.console``: manage the console's users and queues in Redis.

    python -m channels.console users add wanggong --role agent --queues general,vip --display-name 王工
    python -m channels.console users add zhuguan --role supervisor --password-stdin < secret.txt
    python -m channels.console users list [--json]
    python -m channels.console users update wanggong [--role R] [--queues Q1,Q2] [--display-name N]
    python -m channels.console users passwd wanggong [--password-stdin]
    python -m channels.console users remove wanggong
    python -m channels.console queues add manager:m001
    python -m channels.console queues list

Passwords are read from the terminal (asked twice) or, with ``--password-stdin``, from the first
line of standard input; never from the command line. A new password and a removal end the
user's sessions. Redis: ``--redis-url``, else REDIS_URL, else the embedded Redis of ``make run``
(``redis://127.0.0.1:<EMBEDDED_REDIS_PORT, 6390>/0``).
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels.config_error import ConfigError
from channels.console.auth import ROLES, UserExists, UserStore, migrate_legacy_keys, parse_queues
from channels.console.config import ConsoleConfig
from channels.console.sessions import SessionStore
from integrations.redis_url import async_client, parse_redis_url


def _redis_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("REDIS_URL", "").strip():
        return os.environ["REDIS_URL"].strip()
    return f"redis://127.0.0.1:{os.environ.get('EMBEDDED_REDIS_PORT', '6390').strip() or '6390'}/0"


def _where(url: str) -> str:
    """The host:port of each node ``url`` names, never its password."""
    target = parse_redis_url(url)
    if target.hosts:
        return ",".join(f"{host}:{port}" for host, port in target.hosts)
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.hostname else parts.path


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("密码 / password: ")
    if getpass.getpass("再次输入 / again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m channels.console",
                                     description="Manage the agent console's users and queues.")
    parser.add_argument("--redis-url", help="default: REDIS_URL, else the embedded Redis of make run")
    groups = parser.add_subparsers(dest="group", required=True)

    users = groups.add_parser("users", help="console users").add_subparsers(dest="command", required=True)
    add = users.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="agent")
    add.add_argument("--queues", default="", help="comma-separated, e.g. general,vip,manager:m001")
    add.add_argument("--display-name", default="", help="shown to colleagues, e.g. 王工")
    add.add_argument("--password-stdin", action="store_true")
    listing = users.add_parser("list", help="list the users")
    listing.add_argument("--json", action="store_true")
    update = users.add_parser("update", help="change a user's role, queues or display name")
    update.add_argument("name")
    update.add_argument("--role", choices=ROLES)
    update.add_argument("--queues")
    update.add_argument("--display-name")
    passwd = users.add_parser("passwd", help="set a new password (ends the user's sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    remove = users.add_parser("remove", help="delete a user (ends their sessions)")
    remove.add_argument("name")

    queues = groups.add_parser("queues", help="queues").add_subparsers(dest="command", required=True)
    queue_add = queues.add_parser("add", help="create a queue")
    queue_add.add_argument("name")
    queues.add_parser("list", help="list the queues and who serves them")
    return parser


async def _run(args: argparse.Namespace, redis: Redis) -> int:
    await migrate_legacy_keys(redis)
    users = UserStore(redis)
    config = ConsoleConfig.from_env(os.environ)
    sessions = SessionStore(redis, config.session_idle_seconds, config.session_max_seconds)
    if args.group == "queues":
        if args.command == "add":
            await users.add_queue(args.name)
            print(f"queue {args.name} added")
            return 0
        everyone = await users.list()
        for queue in await users.queues():
            serving = [u.name for u in everyone if queue in u.queues]
            print(f"{queue}\t{', '.join(serving) or '-'}")
        return 0
    if args.command == "add":
        queues = parse_queues(args.queues)
        if args.role == "agent" and not queues:
            raise ValueError("an agent needs --queues (e.g. general)")
        user = await users.add(args.name, args.role, queues, _password(args.password_stdin),
                               args.display_name)
        print(f"user {user.name} ({user.role}; queues {','.join(user.queues) or '-'}) added")
    elif args.command == "list":
        everyone = await users.list()
        if args.json:
            print(json.dumps([u.to_json() for u in everyone], ensure_ascii=False))
        for user in everyone if not args.json else ():
            print(f"{user.name}\t{user.role}\t{','.join(user.queues) or '-'}\t{user.display_name}")
    elif args.command == "update":
        queues = parse_queues(args.queues) if args.queues is not None else None
        user = await users.update(args.name, role=args.role, queues=queues, display_name=args.display_name)
        if user is None:
            raise LookupError(f"no user {args.name!r}")
        print(f"user {user.name} ({user.role}; queues {','.join(user.queues) or '-'}) updated")
    elif args.command == "passwd":
        if await users.get(args.name) is None:
            raise LookupError(f"no user {args.name!r}")
        await users.set_password(args.name, _password(args.password_stdin))
        ended = await sessions.delete_user(args.name)
        print(f"password of {args.name} changed; {ended} session(s) ended")
    elif args.command == "remove":
        if not await users.remove(args.name):
            raise LookupError(f"no user {args.name!r}")
        ended = await sessions.delete_user(args.name)
        print(f"user {args.name} removed; {ended} session(s) ended")
    return 0


async def _main(args: argparse.Namespace) -> int:
    redis = async_client(_redis_url(args.redis_url), socket_connect_timeout=3, socket_timeout=10)
    try:
        return await _run(args, redis)
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except (ValueError, LookupError, UserExists, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RedisError, OSError) as exc:
        print(f"error: Redis at {_where(_redis_url(args.redis_url))} is not reachable ({type(exc).__name__}); "
              "start it (make run) or set REDIS_URL / --redis-url", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
