"""One access_token per AppID, shared by every gateway instance through Redis.

Exactly one instance refreshes it, under a Redis lock, shortly before it expires (the others keep
using the still-valid token meanwhile).  When WeChat rejects a token (40001/40014/42001) the
caller asks :meth:`TokenManager.refresh` with the stale token; only the first such caller fetches,
the rest get the token it stored.  A failed fetch is remembered for a few seconds so that a bad
AppSecret or an IP-whitelist problem never turns into a hot loop against WeChat.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.redis_text import redis_text
from channels.wechat.errors import WeChatApiError, WeChatUnavailable

log = logging.getLogger(__name__)

# (access_token, expires_in seconds)
Fetcher = Callable[[], Awaitable[tuple[str, int]]]

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class TokenManager:
    """Shared access_token cache with a single refresher (see module docstring)."""

    def __init__(self, redis: Any, app_id: str, fetch: Fetcher, *,
                 refresh_margin_seconds: float = 300.0, lock_ttl_seconds: float = 15.0,
                 failure_backoff_seconds: float = 5.0) -> None:
        self._redis = redis
        self._fetch = fetch
        self._margin = refresh_margin_seconds
        self._lock_ttl_ms = int(lock_ttl_seconds * 1000)
        self._failure_backoff = failure_backoff_seconds
        self.key = f"pd:wechat:token:{app_id}"
        self._lock_key = f"pd:wechat:token_lock:{app_id}"
        self._failure_key = f"pd:wechat:token_error:{app_id}"
        self._local_lock = asyncio.Lock()
        self.fetches = 0  # how many times this instance called WeChat's token endpoint
        self._cached: tuple[str, float] | None = None
        self._local_slack = 60.0  # re-read Redis a minute before the shared refresh margin

    async def _load(self) -> tuple[str, float] | None:
        raw = redis_text(await self._redis.get(self.key))
        if not raw:
            self._cached = None
            return None
        try:
            data = json.loads(raw)
            self._cached = (str(data["token"]), float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            self._cached = None
        return self._cached

    async def get(self) -> str:
        """A valid access_token, refreshing it first when it is missing or about to expire."""
        cached = self._cached
        if cached and cached[1] - time.time() > self._margin + self._local_slack:
            # Saves a Redis round trip per call; a token another instance replaced meanwhile
            # stays valid at WeChat for 5 minutes, and a rejection goes through refresh().
            return cached[0]
        current = await self._load()
        now = time.time()
        if current and current[1] - now > self._margin:
            return current[0]
        if current and current[1] > now + 1:
            # Still valid: refresh if nobody else is, but never wait for it.
            try:
                if await self._try_refresh(stale=current[0], wait=False):
                    fresh = await self._load()
                    if fresh:
                        return fresh[0]
            except WeChatApiError:
                pass  # logged by the fetcher; the current token still works for a while
            return current[0]
        return await self.refresh(stale=current[0] if current else None)

    async def refresh(self, stale: str | None) -> str:
        """Replace ``stale`` (a token WeChat rejected, or None when there is none) and return the
        new token; when another caller already replaced it, return theirs without fetching."""
        await self._try_refresh(stale=stale, wait=True)
        current = await self._load()
        if current and current[0] != stale:
            return current[0]
        failure = redis_text(await self._redis.get(self._failure_key))
        raise WeChatUnavailable(f"access_token unavailable: {failure or 'refresh did not complete'}",
                                "/cgi-bin/token")

    async def _try_refresh(self, stale: str | None, wait: bool) -> bool:
        """Fetch a new token under the Redis lock unless it was already replaced. With ``wait``,
        a caller that loses the lock waits (bounded) for the winner's token."""
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        while True:
            current = await self._load()
            if current and current[0] != stale and current[1] - time.time() > self._margin:
                return False
            if await self._after_recent_failure(current, stale):
                return False
            owner = uuid.uuid4().hex
            if await self._redis.set(self._lock_key, owner, nx=True, px=self._lock_ttl_ms):
                try:
                    # Again under the lock: the previous holder may have failed since our check.
                    if await self._after_recent_failure(current, stale):
                        return False
                    return await self._fetch_and_store(stale)
                finally:
                    await self._redis.eval(_RELEASE, 1, self._lock_key, owner)
            if not wait or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)

    async def _after_recent_failure(self, current: tuple[str, float] | None, stale: str | None) -> bool:
        """False when no fetch failed in the last few seconds; True when one did but ``current``
        still works; raises WeChatApiError when one did and no token works."""
        failure = redis_text(await self._redis.get(self._failure_key))
        if not failure:
            return False
        if current and current[0] != stale and current[1] > time.time() + 1:
            return True
        raise WeChatApiError(_failure_code(failure), f"token fetch failed recently: {failure}", "/cgi-bin/token")

    async def _fetch_and_store(self, stale: str | None) -> bool:
        current = await self._load()
        if current and current[0] != stale and current[1] - time.time() > self._margin:
            return False  # someone refreshed between our check and our lock
        self.fetches += 1
        try:
            token, expires_in = await self._fetch()
        except WeChatApiError as exc:
            log.error("wechat access_token fetch failed: %s", exc)
            await self._redis.set(self._failure_key, f"{exc.errcode}:{exc.errmsg}"[:200],
                                  px=int(self._failure_backoff * 1000))
            raise
        expires_at = time.time() + expires_in
        ttl_ms = max(int(expires_in * 1000) - 1000, 1000)
        await self._redis.set(self.key, json.dumps({"token": token, "expires_at": expires_at}), px=ttl_ms)
        log.info("wechat access_token refreshed (expires in %ss)", expires_in)
        return True


def _failure_code(failure: str) -> int | None:
    head = failure.split(":", 1)[0]
    try:
        return int(head)
    except ValueError:
        return None
