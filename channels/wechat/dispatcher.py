"""Per-user, in-order processing of WeChat jobs across all gateway instances.

Each user has a Redis list of pending jobs.  A user with pending work is announced once on a
Redis stream (``ready``) read through a consumer group by every instance; whoever reads the
announcement drains that user's list one job at a time, and only withdraws the announcement (in
the same Lua script that checks the list is empty) when nothing is left.  So at most one worker
anywhere handles a given user, in arrival order, while different users proceed in parallel.

If an instance dies mid-drain, its stream entry stays pending in the consumer group and another
instance claims it (XAUTOCLAIM) after ``claim_idle_seconds``; the live drainer keeps its claim fresh
after every job, and every job is bounded by ``job_timeout_seconds`` (< claim_idle_seconds).
A job being processed at the moment of a crash is not retried (at most once: a duplicate answer to
a customer is worse than a BUSY retry prompt).

All keys share the hash tag ``{<namespace>}`` so the Lua scripts also run on Redis Cluster.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError, ResponseError

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]

GROUP = "workers"
DEFAULT_NAMESPACE = "pd:wechat:dispatch"


# With a 4th key: accept the job only if that key (the push's identity) was not seen yet, so
# deduplication and queueing are one atomic step.
_ENQUEUE = """
if #KEYS == 4 and not redis.call('set', KEYS[4], '1', 'NX', 'EX', ARGV[4]) then
  return 0
end
redis.call('rpush', KEYS[1], ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[3])
if redis.call('sadd', KEYS[2], ARGV[2]) == 1 then
  redis.call('xadd', KEYS[3], '*', 'u', ARGV[2])
end
return 1
"""

# Next job of the user, or (atomically, when there is none) withdraw the announcement: returns
# false (nil) when the conversation is finished.
_NEXT_OR_FINISH = """
local job = redis.call('lpop', KEYS[1])
if job then return job end
redis.call('srem', KEYS[2], ARGV[1])
redis.call('xack', KEYS[3], ARGV[2], ARGV[3])
redis.call('xdel', KEYS[3], ARGV[3])
return false
"""

_HAND_BACK = """
if ARGV[3] ~= '' then redis.call('xadd', KEYS[1], '*', 'u', ARGV[3]) end
redis.call('xack', KEYS[1], ARGV[1], ARGV[2])
redis.call('xdel', KEYS[1], ARGV[2])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Dispatcher:
    """Queue jobs per user (:meth:`enqueue`) and run them with ``handler`` (:meth:`start`)."""

    def __init__(self, redis: Any, handler: Handler, *, concurrency: int = 64,
                 job_timeout_seconds: float = 30.0, claim_idle_seconds: float | None = None,
                 queue_ttl_seconds: int = 86400, block_ms: int = 1000,
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        tag = "{" + namespace + "}"
        self._tag = tag
        self.ready_key = f"{tag}:ready"
        self.active_key = f"{tag}:active"
        self._queue_prefix = f"{tag}:q:"
        self._redis = redis
        self._handler = handler
        self._concurrency = concurrency
        self._job_timeout = job_timeout_seconds
        self._claim_idle_ms = int((claim_idle_seconds or max(60.0, 2 * job_timeout_seconds)) * 1000)
        self._queue_ttl_ms = queue_ttl_seconds * 1000
        self._block_ms = block_ms
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._slot_freed = asyncio.Event()

    def queue_key(self, user: str) -> str:
        """The Redis list of pending jobs of ``user``."""
        return self._queue_prefix + user

    def once_key(self, identity: str) -> str:
        """The dedupe key of a push identity (same hash slot as the queues)."""
        return f"{self._tag}:seen:{identity}"

    async def enqueue(self, user: str, job: dict[str, Any], once: str | None = None,
                      once_ttl_seconds: int = 3600) -> bool:
        """Append ``job`` to ``user``'s queue; with ``once`` (a push identity), only if that
        identity was not accepted in the last ``once_ttl_seconds``. True when queued.
        Raises RedisError when Redis is unavailable."""
        keys = [self.queue_key(user), self.active_key, self.ready_key]
        if once:
            keys.append(self.once_key(once))
        return bool(await self._redis.eval(_ENQUEUE, len(keys), *keys, json.dumps(job, ensure_ascii=False),
                                           user, self._queue_ttl_ms, once_ttl_seconds))

    async def start(self) -> None:
        """Create the consumer group if needed and start reading announcements."""
        try:
            await self._redis.xgroup_create(self.ready_key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except RedisError as exc:
            # Redis down at start: the gateway still starts; the read loop creates the group later.
            log.error("wechat dispatcher starting without Redis (%s); will retry", exc)
        self._stopping = False
        if self._concurrency > 0:  # 0: this instance only queues; others answer
            self._reader = asyncio.create_task(self._read_loop(), name="wechat-dispatcher")

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop reading; let running jobs finish for up to ``grace_seconds``, then cancel them.
        Unfinished users stay announced and are claimed by another instance."""
        self._stopping = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        tasks = list(self._draining.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._release_pending()
        except RedisError as exc:
            log.warning("wechat dispatcher could not hand back its conversations (%s); "
                        "they will be claimed after %.0fs", exc, self._claim_idle_ms / 1000)
        try:
            # DELCONSUMER would drop our pending entries: only forget ourselves when none is left.
            pending = await self._redis.xpending_range(self.ready_key, GROUP, min="-", max="+", count=1,
                                                       consumername=self.consumer)
            if not pending:
                await self._redis.xgroup_delconsumer(self.ready_key, GROUP, self.consumer)
        except RedisError:
            pass

    async def _release_pending(self) -> None:
        """Re-announce the conversations still pending on this consumer (read but not finished,
        e.g. a read cut short by shutdown) so other instances pick them up at once."""
        while True:
            pending = await self._redis.xpending_range(self.ready_key, GROUP, min="-", max="+", count=100,
                                                       consumername=self.consumer)
            if not pending:
                return
            for item in pending:
                entry_id = _text(item["message_id"])
                entries = await self._redis.xrange(self.ready_key, entry_id, entry_id)
                user = _text(entries[0][1].get(b"u", entries[0][1].get("u", ""))) if entries else ""
                await self._redis.eval(_HAND_BACK, 1, self.ready_key, GROUP, entry_id, user)

    async def _read_loop(self) -> None:
        backoff = 0.5
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                free = self._concurrency - len(self._draining)
                if free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                if loop.time() >= next_claim:
                    next_claim = loop.time() + max(self._claim_idle_ms / 4000, 1.0)
                    await self._claim_abandoned(free)
                    free = self._concurrency - len(self._draining)
                    if free <= 0:
                        continue
                answer = await self._redis.xreadgroup(GROUP, self.consumer, {self.ready_key: ">"},
                                                      count=free, block=self._block_ms)
                for _stream, entries in answer or []:
                    for entry_id, fields in entries:
                        self._spawn(_text(entry_id), fields)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or restarted: back off, keep going
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    try:
                        await self._redis.xgroup_create(self.ready_key, GROUP, id="0", mkstream=True)
                    except RedisError:
                        pass
                log.warning("wechat dispatcher cannot read from Redis (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _claim_abandoned(self, count: int) -> None:
        answer = await self._redis.xautoclaim(self.ready_key, GROUP, self.consumer, self._claim_idle_ms,
                                              start_id="0-0", count=count)
        entries = answer[1] if answer and len(answer) > 1 else []
        for entry_id, fields in entries:
            entry_id = _text(entry_id)
            if entry_id in self._draining or not fields:
                continue
            log.warning("wechat dispatcher claimed an abandoned conversation entry %s", entry_id)
            self._spawn(entry_id, fields)

    def _spawn(self, entry_id: str, fields: dict[Any, Any]) -> None:
        decoded = {_text(k): _text(v) for k, v in fields.items()}
        user = decoded.get("u")
        if not user:
            return
        task = asyncio.create_task(self._drain(entry_id, user), name=f"wechat-drain-{entry_id}")
        self._draining[entry_id] = task
        task.add_done_callback(lambda _t, e=entry_id: self._done(e))

    def _done(self, entry_id: str) -> None:
        self._draining.pop(entry_id, None)
        self._slot_freed.set()

    async def _drain(self, entry_id: str, user: str) -> None:
        qkey = self.queue_key(user)
        loop = asyncio.get_running_loop()
        refresh_every = self._claim_idle_ms / 4000
        claimed_at = loop.time()
        failures = 0
        while True:
            try:
                raw = await self._redis.eval(_NEXT_OR_FINISH, 3, qkey, self.active_key, self.ready_key,
                                             user, GROUP, entry_id)
                failures = 0
            except RedisError as exc:
                failures += 1
                if failures > 5 or self._stopping:
                    log.error("wechat dispatcher lost Redis while draining a conversation (%s); "
                              "another instance will claim it", exc)
                    return
                await asyncio.sleep(0.2 * failures)
                continue
            if raw is None:
                return
            try:
                job = json.loads(_text(raw))
                await asyncio.wait_for(self._handler(user, job), self._job_timeout)
            except asyncio.CancelledError:
                raise
            except asyncio.TimeoutError:
                log.error("wechat job exceeded %.0fs and was abandoned", self._job_timeout)
            except Exception:  # noqa: BLE001 - one bad job must not stop the conversation
                log.exception("wechat job failed")
            if loop.time() - claimed_at > refresh_every:
                try:
                    # Keep our claim fresh so no other instance takes this conversation over.
                    await self._redis.xclaim(self.ready_key, GROUP, self.consumer, 0, [entry_id], justid=True)
                    claimed_at = loop.time()
                except RedisError:
                    pass
