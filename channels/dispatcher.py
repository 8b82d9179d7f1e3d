"""Per-user, in-order processing of a channel's jobs across all gateway instances.

Channel-neutral: a channel passes its own ``namespace`` (e.g. ``pd:wechat:dispatch``), the
``handler`` that processes one job and, optionally, ``on_interrupted`` (see below).

Each user has a Redis list of pending jobs.  A user with pending work is announced once on a
Redis stream (``ready``) read through a consumer group by every instance; whoever reads the
announcement drains that user's list one job at a time, and only withdraws the announcement (in
the same Lua script that checks the list is empty) when nothing is left.  So at most one worker
anywhere handles a given user, in arrival order, while different users proceed in parallel.

A job taken for processing moves, in the same Lua script, from the user's list to the user's
processing key, and leaves it only once its handler has returned, failed or timed out.  If an
instance dies mid-drain, its stream entry stays pending in the consumer group and another
instance claims it (XAUTOCLAIM) after ``claim_idle_seconds``; an instance stopped gracefully
hands its users back at once.  The live drainer keeps its claim fresh, and every job is bounded
by ``job_timeout_seconds`` (< claim_idle_seconds).

A job found in the processing key when a drain begins was cut short (crash, kill, a deploy whose
grace ran out).  It is not re-run: its turn may already have had its effect (a ticket filed, a
queue number taken) and part of its answer may have reached the customer.  It goes to
``on_interrupted`` instead, as does a job whose handler raised or timed out: the channel decides
what to tell the customer (WeChat sends its busy reply for customer messages, asking them to send
again: a prompt to repeat is better than a repeated action or a duplicate answer).  Without
``on_interrupted`` such jobs are logged and dropped.

:meth:`stop` lets running jobs finish for up to the job timeout (plus a margin) by default, so a
deploy loses no answer in progress as long as the process manager waits that long.

All keys share the hash tag ``{<namespace>}`` so the Lua scripts also run on Redis Cluster.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter
from redis.exceptions import RedisError, ResponseError

from channels.redis_text import redis_text

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]

GROUP = "workers"
# Time a stopping instance allows, beyond the job timeout, for a job's last Redis round trips.
STOP_MARGIN_SECONDS = 2.0

JOBS = Counter("powerdesk_dispatcher_jobs_total", "Jobs processed by the per-user dispatcher, by outcome",
               ["namespace", "outcome"])  # done | failed | timeout | interrupted

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

# The processing key holds "<token> <job>"; the token tells whose job it is.  Drop the job the
# caller finished (token ARGV[5]; a value without a token is dropped too), then answer
# {interrupted, "<token> <job>"}: a job left by a drainer that never finished it (interrupted =
# 1), or the next job of the list, moved into the processing key under the caller's fresh token
# ARGV[6] (a retried call finds it there again).  With nothing left, withdraw the announcement
# atomically and answer false (nil).
_NEXT_OR_FINISH = """
local current = redis.call('get', KEYS[4])
if current then
  local token = string.match(current, '^(%S+) ') or ''
  if token == ARGV[6] then return {0, current} end
  if token ~= ARGV[5] and token ~= '' then return {1, current} end
  redis.call('del', KEYS[4])
end
local job = redis.call('lpop', KEYS[1])
if job then
  local held = ARGV[6] .. ' ' .. job
  redis.call('set', KEYS[4], held, 'PX', ARGV[4])
  return {0, held}
end
redis.call('srem', KEYS[2], ARGV[1])
redis.call('xack', KEYS[3], ARGV[2], ARGV[3])
redis.call('xdel', KEYS[3], ARGV[3])
return false
"""

_FINISH = """
local current = redis.call('get', KEYS[1])
if current and string.match(current, '^(%S+) ') == ARGV[1] then redis.call('del', KEYS[1]) end
return 1
"""

_HAND_BACK = """
if ARGV[3] ~= '' then redis.call('xadd', KEYS[1], '*', 'u', ARGV[3]) end
redis.call('xack', KEYS[1], ARGV[1], ARGV[2])
redis.call('xdel', KEYS[1], ARGV[2])
return 1
"""


class Dispatcher:
    """Queue jobs per user (:meth:`enqueue`) and run them with ``handler`` (:meth:`start`)."""

    def __init__(self, redis: Any, handler: Handler, *, namespace: str,
                 on_interrupted: Handler | None = None, concurrency: int = 64,
                 job_timeout_seconds: float = 30.0, claim_idle_seconds: float | None = None,
                 queue_ttl_seconds: int = 86400, block_ms: int = 1000) -> None:
        tag = "{" + namespace + "}"
        self.namespace = namespace
        self._tag = tag
        self.ready_key = f"{tag}:ready"
        self.active_key = f"{tag}:active"
        self._redis = redis
        self._handler = handler
        self._on_interrupted = on_interrupted
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

    @property
    def stop_grace_seconds(self) -> float:
        """How long :meth:`stop` lets running jobs finish by default."""
        return self._job_timeout + STOP_MARGIN_SECONDS

    def queue_key(self, user: str) -> str:
        """The Redis list of pending jobs of ``user``."""
        return f"{self._tag}:q:{user}"

    def processing_key(self, user: str) -> str:
        """The Redis key holding the job of ``user`` being processed ("<token> <job>")."""
        return f"{self._tag}:p:{user}"

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

    async def has_work(self, user: str) -> bool:
        """Are jobs of ``user`` queued or being processed, on any instance?"""
        return bool(await self._redis.sismember(self.active_key, user))

    async def start(self) -> None:
        """Create the consumer group if needed and start reading announcements."""
        try:
            await self._redis.xgroup_create(self.ready_key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except RedisError as exc:
            # Redis down at start: the gateway still starts; the read loop creates the group later.
            log.error("dispatcher %s starting without Redis (%s); will retry", self.namespace, exc)
        self._stopping = False
        if self._concurrency > 0:  # 0: this instance only queues; others answer
            self._reader = asyncio.create_task(self._read_loop(), name=f"dispatcher-{self.namespace}")

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop reading and taking new jobs; let running jobs finish for up to ``grace_seconds``
        (default :attr:`stop_grace_seconds`, at least the job timeout), then cancel them. The
        users are handed back at once to the other instances, which answer a cancelled job
        through ``on_interrupted`` and go on with the rest of the queue."""
        self._stopping = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        tasks = list(self._draining.values())
        if tasks:
            grace = self.stop_grace_seconds if grace_seconds is None else grace_seconds
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pending:
                log.warning("dispatcher %s stopped with %d jobs unfinished after %.0fs; another "
                            "instance answers them as interrupted", self.namespace, len(pending), grace)
        try:
            await self._release_pending()
        except RedisError as exc:
            log.warning("dispatcher %s could not hand back its users (%s); they will be claimed after %.0fs",
                        self.namespace, exc, self._claim_idle_ms / 1000)
        try:
            # DELCONSUMER would drop our pending entries: only forget ourselves when none is left.
            pending_entries = await self._redis.xpending_range(self.ready_key, GROUP, min="-", max="+", count=1,
                                                               consumername=self.consumer)
            if not pending_entries:
                await self._redis.xgroup_delconsumer(self.ready_key, GROUP, self.consumer)
        except RedisError:
            pass

    async def _release_pending(self) -> None:
        """Re-announce the users still pending on this consumer (read but not finished, e.g. a
        drain or a read cut short by shutdown) so other instances pick them up at once."""
        while True:
            pending = await self._redis.xpending_range(self.ready_key, GROUP, min="-", max="+", count=100,
                                                       consumername=self.consumer)
            if not pending:
                return
            for item in pending:
                entry_id = redis_text(item["message_id"])
                entries = await self._redis.xrange(self.ready_key, entry_id, entry_id)
                fields = entries[0][1] if entries else {}
                user = redis_text(fields.get(b"u", fields.get("u", ""))) or ""
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
                        self._spawn(redis_text(entry_id), fields)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or restarted: back off, keep going
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    try:
                        await self._redis.xgroup_create(self.ready_key, GROUP, id="0", mkstream=True)
                    except RedisError:
                        pass
                log.warning("dispatcher %s cannot read from Redis (%s); retrying in %.1fs",
                            self.namespace, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _claim_abandoned(self, count: int) -> None:
        answer = await self._redis.xautoclaim(self.ready_key, GROUP, self.consumer, self._claim_idle_ms,
                                              start_id="0-0", count=count)
        entries = answer[1] if answer and len(answer) > 1 else []
        for entry_id, fields in entries:
            entry_id = redis_text(entry_id)
            if entry_id in self._draining or not fields:
                continue
            log.warning("dispatcher %s claimed an abandoned user entry %s", self.namespace, entry_id)
            self._spawn(entry_id, fields)

    def _spawn(self, entry_id: str, fields: dict[Any, Any]) -> None:
        decoded = {redis_text(k): redis_text(v) for k, v in fields.items()}
        user = decoded.get("u")
        if not user:
            return
        task = asyncio.create_task(self._drain(entry_id, user), name=f"drain-{self.namespace}-{entry_id}")
        self._draining[entry_id] = task
        task.add_done_callback(lambda _t, e=entry_id: self._done(e))

    def _done(self, entry_id: str) -> None:
        self._draining.pop(entry_id, None)
        self._slot_freed.set()

    async def _redis_retrying(self, what: str, call: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        """Run ``call`` with a few quick retries; (False, None) when Redis stays unavailable."""
        for attempt in range(1, 7):
            try:
                return True, await call()
            except RedisError as exc:
                if attempt == 6 or self._stopping:
                    log.error("dispatcher %s lost Redis while %s (%s); another instance will claim the user",
                              self.namespace, what, exc)
                    return False, None
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    async def _drain(self, entry_id: str, user: str) -> None:
        keys = (self.queue_key(user), self.active_key, self.ready_key, self.processing_key(user))
        loop = asyncio.get_running_loop()
        refresh_every = self._claim_idle_ms / 4000
        claimed_at = loop.time()
        held = ""  # token of the job this drain has finished and may drop
        while True:
            if held and self._stopping:
                # Take no more of this user's jobs: stop() hands the user back to another instance.
                await self._redis_retrying("finishing a job", functools.partial(
                    self._redis.eval, _FINISH, 1, keys[3], held))
                return
            token = uuid.uuid4().hex
            ok, answer = await self._redis_retrying("taking a job", functools.partial(
                self._redis.eval, _NEXT_OR_FINISH, 4, *keys, user, GROUP, entry_id,
                self._queue_ttl_ms, held, token))
            if not ok or answer is None:
                return
            interrupted, value = int(answer[0]), redis_text(answer[1])
            held, _, raw = value.partition(" ")
            if loop.time() - claimed_at > refresh_every:
                try:
                    # Keep our claim fresh so no other instance takes this user over.
                    await self._redis.xclaim(self.ready_key, GROUP, self.consumer, 0, [entry_id], justid=True)
                    claimed_at = loop.time()
                except RedisError:
                    pass
            await self._process(user, raw, interrupted=bool(interrupted))

    async def _process(self, user: str, raw: str, interrupted: bool) -> None:
        try:
            job = json.loads(raw)
        except ValueError:
            log.error("dispatcher %s dropped an unreadable job", self.namespace)
            JOBS.labels(self.namespace, "failed").inc()
            return
        if interrupted:
            log.warning("dispatcher %s found a job interrupted mid-processing; answering it as interrupted",
                        self.namespace)
            JOBS.labels(self.namespace, "interrupted").inc()
            await self._run_interrupted(user, job)
            return
        try:
            await asyncio.wait_for(self._handler(user, job), self._job_timeout)
            JOBS.labels(self.namespace, "done").inc()
            return
        except asyncio.TimeoutError:
            log.error("dispatcher %s job exceeded %.0fs and was abandoned", self.namespace, self._job_timeout)
            JOBS.labels(self.namespace, "timeout").inc()
        except Exception:  # noqa: BLE001 - one bad job must not stop the user's queue
            log.exception("dispatcher %s job failed", self.namespace)
            JOBS.labels(self.namespace, "failed").inc()
        await self._run_interrupted(user, job)

    async def _run_interrupted(self, user: str, job: dict[str, Any]) -> None:
        if self._on_interrupted is None:
            return
        try:
            await asyncio.wait_for(self._on_interrupted(user, job), self._job_timeout)
        except asyncio.TimeoutError:
            log.error("dispatcher %s interrupted-job handler exceeded %.0fs", self.namespace, self._job_timeout)
        except Exception:  # noqa: BLE001 - logged; the queue goes on
            log.exception("dispatcher %s interrupted-job handler failed", self.namespace)
