"""Console users (roles, queues, argon2id password hashes) and the login attempt limits, in Redis.

Keys (every console key has the hash tag ``{console}``: the transactions and scripts that touch
several of them stay on one slot of a Redis Cluster):

* ``pd:{console}:user:<name>`` hash: ``name, role (agent|supervisor), queues (comma-separated),
  display_name, password (argon2id hash), created_at``; ``pd:{console}:users`` the set of names;
* ``pd:{console}:queues`` the set of queue names created with the CLI (the hand-off store adds
  every queue it has used, see :meth:`channels.handoff.store.HandoffStore.queues`);
* ``pd:{console}:login:user:<name>`` and ``pd:{console}:login:address:<address>``: failed
  logins within the window (the key expires with the window).

Keys of the names before the hash tag (``pd:console:*``) are moved by
:func:`migrate_legacy_keys` (the gateway and the CLI run it on start): users and queues move,
sessions end (agents sign in again once), login counters run out by themselves.

Password hashing runs in worker threads, at most :data:`HASH_CONCURRENCY` at a time (argon2id
uses 64 MiB per hash), so a burst of logins queues instead of exhausting memory.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from channels.key_migration import move_keys
from channels.redis_text import redis_text
from integrations.rate_limit import address_key

PREFIX = "pd:{console}:"
LEGACY_PREFIX = "pd:console:"  # before the Cluster hash tag
USERS_KEY = PREFIX + "users"
QUEUES_KEY = PREFIX + "queues"
ROLES = ("agent", "supervisor")
DEFAULT_QUEUES = ("general", "vip")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 256
HASH_CONCURRENCY = 2
# What an unknown user name is checked against: a hash of a random secret with the CLI's
# (argon2-cffi's default) parameters, so it costs what a real user's check costs.
DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$/47vydBmw9GDnl/dxITCfg$zksJd3fF/JLuPU7m85LUeVzJDngnB3tq5gY7fHKookg"

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# The hand-off's queues (channels.handoff.service.QUEUE_RE): general, vip, a customer manager's.
_QUEUE = re.compile(r"general|vip|manager:[A-Za-z0-9_.-]{1,32}")


def user_key(name: str) -> str:
    return f"{PREFIX}user:{name}"


def valid_name(name: object) -> bool:
    """User names: lower-case letters, digits, ``_ . -``, up to 64 characters."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def valid_queue(queue: object) -> bool:
    """``general``, ``vip`` or ``manager:<id>`` (a customer manager's queue)."""
    return isinstance(queue, str) and _QUEUE.fullmatch(queue) is not None


def parse_queues(raw: str) -> tuple[str, ...]:
    """``"general,vip"`` → ``("general", "vip")``; raises ValueError naming a bad entry."""
    queues = tuple(dict.fromkeys(q.strip() for q in raw.split(",") if q.strip()))
    for queue in queues:
        if not valid_queue(queue):
            raise ValueError(f"not a queue name: {queue!r} (general, vip, manager:<id>, ...)")
    return queues


def check_password(password: str) -> None:
    """Raise ValueError unless ``password`` is acceptable (length only: a passphrase is fine)."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValueError(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    queues: tuple[str, ...]
    display_name: str

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"

    def to_json(self) -> dict:
        return {"name": self.name, "role": self.role, "queues": list(self.queues),
                "display_name": self.display_name}


class UserExists(ValueError):
    """``users add`` of a name that is taken."""


class UserStore:
    """Console users and queues; ``redis`` is a ``redis.asyncio`` client (decoding or not)."""

    def __init__(self, redis, hasher: PasswordHasher | None = None) -> None:
        self._redis = redis
        self._hasher = hasher or PasswordHasher()
        self._hashing = asyncio.Semaphore(HASH_CONCURRENCY)

    async def _in_thread(self, function, *args):
        async with self._hashing:
            return await asyncio.to_thread(function, *args)

    async def add(self, name: str, role: str, queues: tuple[str, ...], password: str,
                  display_name: str = "") -> User:
        """Create a user; raises ValueError for a bad name/role/queue/password, UserExists."""
        if not valid_name(name):
            raise ValueError("a user name is 1-64 lower-case letters, digits, '_', '.', '-'")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        for queue in queues:
            if not valid_queue(queue):
                raise ValueError(f"not a queue name: {queue!r}")
        check_password(password)
        hashed = await self._in_thread(self._hasher.hash, password)
        user = User(name, role, tuple(queues), display_name.strip()[:32] or name)
        if not await self._redis.hsetnx(user_key(name), "name", name):
            raise UserExists(f"user {name!r} exists")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(user_key(name), mapping={
                "role": role, "queues": ",".join(user.queues), "display_name": user.display_name,
                "password": hashed, "created_at": f"{time.time():.0f}"})
            pipe.sadd(USERS_KEY, name)
            if user.queues:
                pipe.sadd(QUEUES_KEY, *user.queues)
            await pipe.execute()
        return user

    async def get(self, name: str) -> User | None:
        if not valid_name(name):
            return None
        row = await self._redis.hgetall(user_key(name))
        return _user(row) if row else None

    async def list(self) -> list[User]:
        names = sorted(redis_text(n) for n in await self._redis.smembers(USERS_KEY))
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(user_key(name))
            rows = await pipe.execute() if names else []
        return [user for user in (_user(row) for row in rows if row) if user is not None]

    async def remove(self, name: str) -> bool:
        if not valid_name(name):
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(user_key(name))
            pipe.srem(USERS_KEY, name)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def update(self, name: str, *, role: str | None = None, queues: tuple[str, ...] | None = None,
                     display_name: str | None = None) -> User | None:
        """Change a user's role, queues or display name; None when there is no such user."""
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        for queue in queues or ():
            if not valid_queue(queue):
                raise ValueError(f"not a queue name: {queue!r}")
        if await self.get(name) is None:
            return None
        fields = {"role": role, "queues": ",".join(queues) if queues is not None else None,
                  "display_name": display_name.strip()[:32] or name if display_name is not None else None}
        changes = {k: v for k, v in fields.items() if v is not None}
        if changes:
            await self._redis.hset(user_key(name), mapping=changes)
        if queues:
            await self._redis.sadd(QUEUES_KEY, *queues)
        return await self.get(name)

    async def set_password(self, name: str, password: str) -> bool:
        """False when there is no such user."""
        check_password(password)
        if await self.get(name) is None:
            return False
        hashed = await self._in_thread(self._hasher.hash, password)
        await self._redis.hset(user_key(name), "password", hashed)
        return True

    async def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None. An unknown name costs one hash too,
        so the answer's timing does not tell which names exist."""
        row = await self._redis.hgetall(user_key(name)) if valid_name(name) else {}
        fields = {redis_text(k): redis_text(v) for k, v in (row or {}).items()}
        stored = fields.get("password")
        if not stored:
            stored, fields = DUMMY_HASH, {}
        try:
            await self._in_thread(self._hasher.verify, stored, password[:MAX_PASSWORD_CHARS])
        except (VerificationError, InvalidHashError):
            return None
        return _user(row) if fields else None

    async def add_queue(self, queue: str) -> None:
        if not valid_queue(queue):
            raise ValueError(f"not a queue name: {queue!r} (general, vip, manager:<id>, ...)")
        await self._redis.sadd(QUEUES_KEY, queue)

    async def queues(self) -> list[str]:
        """The queues created with the CLI or named by a user, and the defaults."""
        stored = {redis_text(q) for q in await self._redis.smembers(QUEUES_KEY)}
        return sorted(stored | set(DEFAULT_QUEUES))


def _user(row) -> User | None:
    fields = {redis_text(k): redis_text(v) for k, v in (row or {}).items()}
    if fields.get("role") not in ROLES or not fields.get("name"):
        return None
    queues = tuple(q for q in (fields.get("queues") or "").split(",") if q)
    return User(fields["name"], fields["role"], queues, fields.get("display_name") or fields["name"])


# KEYS: the name's and the address's counters; ARGV: their maxima, the window (s). Refused (the
# longest wait in seconds) when either counter is at its maximum; else both count this attempt
# (a counter's window starts with its first attempt) and 0.
_RESERVE_LUA = """
local wait = 0
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then ttl = tonumber(ARGV[#KEYS + 1]) end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[#KEYS + 1]) end
end
return 0
"""

# KEYS: the same counters. A successful login: the name's count is cleared, the address's
# attempt taken back.
_REFUND_LUA = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 0
"""


class LoginLimiter:
    """Failed logins counted per user name and per client address within a window; either at
    its maximum refuses further attempts (without checking the password) until its window ends.

    An attempt is reserved atomically before the password is checked (:meth:`reserve`), so
    parallel guesses cannot pass the check together; a successful login takes its attempt back
    (:meth:`succeeded`: the name's count cleared, the address's decremented), so only failures
    count."""

    def __init__(self, redis, per_user: int, per_address: int, window_seconds: int) -> None:
        self._redis = redis
        self._limits = (per_user, per_address)
        self._window = window_seconds
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._refund = redis.register_script(_REFUND_LUA)

    def _keys(self, name: str, address: str) -> list[str]:
        # Both keys on one slot of a Redis Cluster (PREFIX's hash tag): one script touches both.
        return [f"{PREFIX}login:user:{name.lower()[:64]}",
                f"{PREFIX}login:address:{address_key(address) if address else 'unknown'}"]

    async def reserve(self, name: str, address: str) -> int:
        """Count an attempt of ``name`` from ``address``; 0 when it may go on, else the seconds
        until one is allowed again (nothing counted)."""
        return int(await self._reserve(keys=self._keys(name, address),
                                       args=[*self._limits, self._window]))

    async def succeeded(self, name: str, address: str) -> None:
        await self._refund(keys=self._keys(name, address), args=[])


async def migrate_legacy_keys(redis) -> int:
    """Move the console's users and queues from their names before the ``{console}`` hash tag
    and end the sessions stored under the old names; returns how many users and queue sets
    moved (0 once done)."""
    moved = 0
    for old, new in ((f"{LEGACY_PREFIX}user:", f"{PREFIX}user:"), (f"{LEGACY_PREFIX}users", USERS_KEY),
                     (f"{LEGACY_PREFIX}queues", QUEUES_KEY)):
        moved += await move_keys(redis, old, new)
    async for key in redis.scan_iter(match=f"{LEGACY_PREFIX}session*", count=500):
        await redis.delete(key)
    return moved
