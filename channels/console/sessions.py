"""Console sessions in Redis: a random token in an HttpOnly cookie, a CSRF token per session,
an idle timeout that every use slides and an absolute lifetime from the login.

Keys: ``pd:{console}:session:<sha256 of the token>`` hash ``user, csrf, created_at, last_seen``
(the token itself is never stored, so a copy of Redis lets nobody in), expiring when the session
would; ``pd:{console}:sessions:<user>`` the set of a user's session keys (removed users and
password changes end them all). One hash tag, so a login's transaction stays on one slot of a
Redis Cluster.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from channels.redis_text import redis_text

PREFIX = "pd:{console}:"
COOKIE_NAME = "pd_console"
CSRF_HEADER = "X-CSRF-Token"
_TOKEN_BYTES = 32


def _session_key(token: str) -> str:
    return PREFIX + "session:" + hashlib.sha256(token.encode()).hexdigest()


def _user_sessions_key(user: str) -> str:
    return f"{PREFIX}sessions:{user}"


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    created_at: float
    last_seen: float
    idle_expires_at: float
    expires_at: float

    def csrf_ok(self, presented: str | None) -> bool:
        """Constant-time comparison of a request's CSRF header with this session's token."""
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf.encode())

    def to_json(self) -> dict:
        return {"created_at": self.created_at, "idle_expires_at": self.idle_expires_at,
                "expires_at": self.expires_at}


class SessionStore:
    """Sessions of ``idle_seconds`` sliding and ``max_seconds`` absolute lifetime; ``clock``
    gives unix seconds (tests pin it)."""

    def __init__(self, redis, idle_seconds: int, max_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._idle = idle_seconds
        self._max = max_seconds
        self._clock = clock

    def _session(self, user: str, csrf: str, created: float, seen: float) -> Session:
        return Session(user, csrf, created, seen, seen + self._idle, created + self._max)

    async def create(self, user: str) -> tuple[str, Session]:
        """A new session of ``user``: (the cookie's token, the session)."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = self._clock()
        session = self._session(user, secrets.token_urlsafe(_TOKEN_BYTES), now, now)
        key = _session_key(token)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"user": user, "csrf": session.csrf,
                                    "created_at": f"{now:.3f}", "last_seen": f"{now:.3f}"})
            pipe.expire(key, self._idle)
            pipe.sadd(_user_sessions_key(user), key)
            pipe.expire(_user_sessions_key(user), self._max)
            await pipe.execute()
        return token, session

    async def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of ``token`` (None when unknown, idle too long or too old); with
        ``touch`` its idle timer restarts now."""
        if not token or len(token) > 128:
            return None
        key = _session_key(token)
        row = {redis_text(k): redis_text(v) for k, v in (await self._redis.hgetall(key)).items()}
        if not row.get("user") or not row.get("csrf"):
            return None
        now = self._clock()
        try:
            created, seen = float(row["created_at"]), float(row["last_seen"])
        except (KeyError, ValueError):
            created = seen = float("-inf")
        if now >= created + self._max or now >= seen + self._idle:
            await self._forget(key, row["user"])
            return None
        if not touch:
            return self._session(row["user"], row["csrf"], created, seen)
        left = min(self._idle, created + self._max - now)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, "last_seen", f"{now:.3f}")
            pipe.expire(key, max(1, int(left + 0.999)))
            await pipe.execute()
        return self._session(row["user"], row["csrf"], created, now)

    async def delete(self, token: str | None) -> None:
        """Log out: the session of ``token`` ends now."""
        if not token or len(token) > 128:
            return
        key = _session_key(token)
        user = redis_text(await self._redis.hget(key, "user"))
        await self._forget(key, user)

    async def delete_user(self, user: str) -> int:
        """End every session of ``user`` (removed, or a new password); how many there were."""
        keys = [redis_text(k) for k in await self._redis.smembers(_user_sessions_key(user))]
        async with self._redis.pipeline(transaction=True) as pipe:
            if keys:
                pipe.delete(*keys)
            pipe.delete(_user_sessions_key(user))
            answers = await pipe.execute()
        return int(answers[0]) if keys else 0

    async def _forget(self, key: str, user: str | None) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            if user:
                pipe.srem(_user_sessions_key(user), key)
            await pipe.execute()
