"""FIFO asyncio locks by key (a conversation, a web session) inside one process.

The router, the delivery facade and the web chat each take a per-conversation turn; this is the
in-process half they share (the cross-instance half is each one's own Redis lock). A key's lock
exists while someone holds it or waits for it, so the table does not grow with every
conversation ever seen.
"""
from __future__ import annotations

import asyncio


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # asyncio.Lock wakes its waiters in arrival order
        self.users = 0


class Held:
    """A held turn of one key; :meth:`release` exactly once (it may be called from another
    task, e.g. after a Redis lock taken inside the turn has been released in the background)."""

    __slots__ = ("_locks", "_key", "_entry")

    def __init__(self, locks: KeyedLocks, key: str, entry: _Entry) -> None:
        self._locks, self._key, self._entry = locks, key, entry

    def release(self) -> None:
        self._entry.lock.release()
        self._locks._forget(self._key, self._entry)

    async def __aenter__(self) -> Held:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.release()


class KeyedLocks:
    """One FIFO lock per key: ``async with await locks.acquire(key):`` or, to release later,
    ``held = await locks.acquire(key, timeout)`` … ``held.release()``."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def users(self, key: str) -> int:
        """How many callers hold or wait for ``key``'s turn."""
        entry = self._entries.get(key)
        return entry.users if entry else 0

    async def acquire(self, key: str, timeout: float | None = None) -> Held:
        """Wait for ``key``'s turn (raises asyncio.TimeoutError after ``timeout`` seconds)."""
        entry = self._entries.setdefault(key, _Entry())
        entry.users += 1
        try:
            await asyncio.wait_for(entry.lock.acquire(), timeout)
        except BaseException:
            self._forget(key, entry)
            raise
        return Held(self, key, entry)

    def _forget(self, key: str, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0 and self._entries.get(key) is entry:
            del self._entries[key]
