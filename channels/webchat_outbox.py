"""Web chat outbound: the channel adapter and the per-session outbox in Redis.

A web visitor is reachable only while a tab of the session is connected, to one of possibly
many gateway instances. So :class:`WebChatAdapter` (the ``web`` adapter of the delivery facade)
appends the rendered ``bot_uttered`` events to the session's outbox (a Redis list with a TTL,
``WEBCHAT_OUTBOX_TTL_SECONDS``, refreshed by every append) and publishes a wake-up on
``pd:web:outbox:wake``. Fast path (the answers of a live turn): when this instance holds a tab
of the session and its outbox is empty, it emits the events to the session's room at once (the
facade's per-conversation turn is held, so nothing can be appended in between: order holds).
:class:`WebOutbox`, one per gateway instance, listens to the wake-ups; the instance that
holds sockets of that session drains the list, in order, into the session's room (one drainer
at a time per session: a Redis lock). A session that is confirmed (``session_request``, or a
first message that adopts its id) on any instance drains its outbox before anything else, so a
visitor who was offline gets the messages on return.
Events leave the list only after they were emitted (at least once: a crash between the emit
and the trim repeats them).

Presence: each instance records the sessions it holds sockets of in ``pd:web:{<session>}:online``
(a sorted set of instance ids scored by when that claim expires, refreshed every few seconds),
so the adapter answers ``sent`` when a tab was connected a moment ago (the events are emitted
at once; if that tab just closed, they wait for its return) and ``queued`` (``when`` None: as
soon as the visitor is back) when no tab is. A periodic pass also drains any non-empty outbox of
a local session, so a wake-up lost to a Redis reconnect delays messages by seconds, not forever.

A notice with a ``key`` (a broadcast's idempotency key) is appended at most once per session:
one Lua script (one round trip) appends its events and publishes the wake-up only if
``pd:web:{<session>}:notice:<key>`` does not exist and records there, in the same step, what it
answered (``sent``/``queued``, kept as long as the
outbox); a later delivery of the key appends nothing and gets that answer with the reason
``duplicate``. Keyed notices always take the outbox path (no fast path), so the record and the
append cannot be separated by a crash.

Keys carry the session id as a hash tag (``pd:web:{<session>}:…``), so one session's keys share
a Redis Cluster slot. With GATEWAY_SOCKETIO_FANOUT on, the drained events reach every tab of the
session on every instance; without it, the tabs on the draining instance.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from redis.exceptions import LockError, RedisError

from channels import metrics
from channels.delivery import encode_content
from channels.keys import REDIS_KEY
from channels.messages import DeliveryResult, Notice, Purpose, Reply
from channels.redis_text import redis_text
from channels.webchat_protocol import bot_uttered_events, valid_session_id
from integrations.masking import mask_account

log = logging.getLogger(__name__)

WAKE_CHANNEL = "pd:web:outbox:wake"
DEFAULT_TTL_SECONDS = 7 * 86400
PRESENCE_SECONDS = 30.0     # how long one instance's claim "a tab of this session is here" lasts
DRAIN_BATCH = 50

# KEYS: the notice's record, the outbox, the presence set. ARGV: TTL, now, wake-up channel,
# session id, then the events. Appends a keyed notice's events (and publishes the wake-up)
# unless its record exists; returns {appended, answer}.
_APPEND_ONCE = """
local prior = redis.call('GET', KEYS[1])
if prior then return {0, prior} end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
local status = 'queued'
if redis.call('ZCOUNT', KEYS[3], ARGV[2], '+inf') > 0 then status = 'sent' end
redis.call('SET', KEYS[1], status, 'EX', tonumber(ARGV[1]))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {1, status}
"""

# Web texts of the notices; the card's ``custom`` payload carries the kind and parameters for
# pages that render notices themselves. An urgent notice's text starts with URGENT_MARK.
URGENT_MARK = "【紧急】"
NOTICE_TEXTS = {
    "outage_notice": "【停电通知】{area}将于{start}至{end}停电，原因：{reason}。给您带来不便，敬请谅解。",
    "power_restored": "【恢复供电】{area}已于{restored_at}恢复供电，感谢您的耐心等待。",
    "outage_restored": "【恢复供电】{area}已恢复供电，感谢您的耐心等待。",
    "bill_due": "【缴费提醒】您户号{account}的{month}电费{amount}元，请于{due_date}前缴纳。",
    "bill_summary": "【电费账单】您户号{account}的{month}电费{amount}元，请于{due_date}前缴纳。",
    "arrears": "【欠费提醒】您户号{account}尚有{months}电费共{amount}元未缴，请尽快缴纳，以免影响用电。",
    "low_balance": "【余额提醒】您户号{account}的预付费余额为{balance}元，已低于{threshold}元，请及时充值。",
    "ticket_receipt": "【工单回执】您的{kind}工单{ticket_id}已受理，我们将于{promised_by}前处理。",
    "verification_code": "您的验证码是{code}，{minutes}分钟内有效。请勿告诉他人，工作人员不会索要验证码。",
}
GENERIC_NOTICE_TEXT = "您有一条新的通知，请留意。如有疑问，请拨打95598供电服务热线。"


def outbox_key(session_id: str) -> str:
    """The Redis list of ``bot_uttered`` events (JSON) waiting for ``session_id``."""
    return f"pd:web:{{{session_id}}}:outbox"


def presence_key(session_id: str) -> str:
    """The sorted set instance id → until when it holds a socket of ``session_id``."""
    return f"pd:web:{{{session_id}}}:online"


def notice_record_key(session_id: str, key: str) -> str:
    """What the keyed notice ``key`` to ``session_id`` was answered (``sent``/``queued``)."""
    return f"pd:web:{{{session_id}}}:notice:{key}"


def _drain_lock_key(session_id: str) -> str:
    return f"pd:web:{{{session_id}}}:drain"


class _Defaults(dict):
    def __missing__(self, key: str) -> str:
        return ""


def notice_reply(notice: Notice) -> Reply:
    """A notice as a web chat card: its Chinese text plus ``custom`` ``{"notice": {kind,
    params, urgent}}``."""
    params = dict(notice.params)
    if params.get("account"):
        params["account"] = mask_account(params["account"])
    template = NOTICE_TEXTS.get(notice.kind)
    text = template.format_map(_Defaults(params)) if template else GENERIC_NOTICE_TEXT
    if notice.urgent:
        text = URGENT_MARK + text
    card = encode_content(notice)
    card["notice"].pop("key", None)  # the idempotency key names the raw account: not for pages
    return Reply(text, custom=card)


class WebChatAdapter:
    """The ``web`` channel adapter: renders and appends to the session's outbox."""

    name = "web"

    def __init__(self, redis: Any, ttl_seconds: int = DEFAULT_TTL_SECONDS,
                 clock: Callable[[], float] = time.time, local: WebOutbox | None = None) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._clock = clock
        self._local = local  # this instance's sockets, for the fast path
        self._append_once = redis.register_script(_APPEND_ONCE)

    async def send(self, user_id: str, content: Sequence[Reply] | Notice,
                   purpose: Purpose) -> DeliveryResult:
        """Send ``content`` to session ``user_id``: emitted at once when a tab of it is on this
        instance and nothing waits before it, else queued in its outbox: ``sent`` when a tab
        is connected now, else ``queued`` (delivered when the session reconnects, within the
        outbox TTL)."""
        if not valid_session_id(user_id):
            return DeliveryResult("skipped", "invalid_user")
        replies = [notice_reply(content)] if isinstance(content, Notice) else list(content)
        events = [event for reply in replies for event in bot_uttered_events(reply)]
        if not events:
            return DeliveryResult("skipped", "empty")
        if isinstance(content, Notice) and content.key:
            return await self._append_keyed(user_id, content.key, events)
        if self._local is not None and await self._local.emit_now(user_id, events):
            return DeliveryResult("sent")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(outbox_key(user_id), *(json.dumps(e, ensure_ascii=False) for e in events))
            pipe.expire(outbox_key(user_id), self._ttl)
            pipe.zcount(presence_key(user_id), self._clock(), "+inf")
            *_, online = await pipe.execute()
        await self._redis.publish(WAKE_CHANNEL, user_id)  # a Cluster pipeline refuses PUBLISH
        return DeliveryResult("sent") if online else DeliveryResult("queued")

    async def _append_keyed(self, user_id: str, key: str,
                            events: list[dict[str, Any]]) -> DeliveryResult:
        appended, answer = await self._append_once(
            keys=[notice_record_key(user_id, key), outbox_key(user_id), presence_key(user_id)],
            args=[self._ttl, self._clock(), WAKE_CHANNEL, user_id,
                  *(json.dumps(e, ensure_ascii=False) for e in events)])
        status = "sent" if redis_text(answer) == "sent" else "queued"
        return DeliveryResult(status) if appended else DeliveryResult(status, "duplicate")


class WebOutbox:
    """One gateway instance's side of the outbox: wake-ups, presence and draining."""

    def __init__(self, sio: Any, clock: Callable[[], float] = time.time,
                 presence_seconds: float = PRESENCE_SECONDS) -> None:
        self.sio = sio
        self.instance = uuid.uuid4().hex[:12]
        self._clock = clock
        self._presence = presence_seconds
        self._redis: Any = None
        self._claimed: set[str] = set()   # sessions this instance last claimed presence of
        self._tasks: set[asyncio.Task] = set()

    def local_sessions(self) -> set[str]:
        """Session ids with a socket on this instance (socket.io rooms that are not socket ids)."""
        manager = self.sio.manager
        return {room for room in manager.rooms.get("/", {})
                if room is not None and not manager.is_sid_room("/", room)}

    def _is_local(self, session_id: str) -> bool:
        return any(True for _ in self.sio.manager.get_participants("/", session_id))

    async def emit_now(self, session_id: str, events: Sequence[dict[str, Any]]) -> bool:
        """Emit ``events`` to the session's room now if a tab of it is here and its outbox is
        empty (the caller holds the conversation's delivery turn); False if they must queue.
        Redis failing here does not hold up an answer for a tab that is here."""
        if self._redis is None or not self._is_local(session_id):
            return False
        try:
            if await self._redis.llen(outbox_key(session_id)):
                return False  # older messages first: they drain in order, then these
        except (RedisError, OSError) as exc:
            log.warning("web outbox: length check failed (%s); emitting directly",
                        type(exc).__name__)
            metrics.ERRORS.labels("webchat_outbox").inc()
        for event in events:
            await self.sio.emit("bot_uttered", event, room=session_id)
        return True

    async def session_joined(self, session_id: str) -> None:
        """A tab of ``session_id`` was confirmed here: claim presence, then drain its outbox."""
        if self._redis is None:
            return
        try:
            (waiting,) = await self._claim([session_id])
            if waiting:  # a message appended after the claim comes with its own wake-up
                await self.drain(session_id)
        except RedisError as exc:
            log.warning("web outbox: session join bookkeeping failed (%s)", type(exc).__name__)
            metrics.ERRORS.labels("webchat_outbox").inc()

    async def _claim(self, sessions: Sequence[str]) -> list[int]:
        """Claim presence of ``sessions``; returns their outbox lengths."""
        until = self._clock() + self._presence
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in sessions:
                pipe.zadd(presence_key(session_id), {self.instance: until})
                pipe.expire(presence_key(session_id), int(self._presence) + 1)
                pipe.llen(outbox_key(session_id))
            answers = await pipe.execute()
        self._claimed.update(sessions)
        return [int(n) for n in answers[2::3]]

    async def drain(self, session_id: str) -> int:
        """Emit the session's waiting events to its room in order, if a tab of it is here and
        no other drain of it runs; returns how many were emitted."""
        emitted = 0
        key = outbox_key(session_id)
        while self._is_local(session_id):
            lock = self._redis.lock(_drain_lock_key(session_id), timeout=30, blocking=False)
            if not await lock.acquire():
                return emitted  # the holder looks again after releasing
            try:
                while batch := await self._redis.lrange(key, 0, DRAIN_BATCH - 1):
                    done = 0
                    for raw in batch:
                        if not self._is_local(session_id):  # the last tab here just left
                            break
                        await self.sio.emit("bot_uttered", json.loads(raw), room=session_id)
                        done += 1
                    if done:
                        await self._redis.ltrim(key, done, -1)
                        emitted += done
                    if done < len(batch):
                        break
            finally:
                with contextlib.suppress(LockError):
                    await lock.release()
            # Something appended while another drain held the lock may have lost its wake-up.
            if not await self._redis.llen(key):
                break
        if emitted:
            log.info("web outbox: %d event(s) delivered to session %s…", emitted, session_id[:8])
        return emitted

    def _spawn_drain(self, session_id: str) -> None:
        task = asyncio.create_task(self._drain_quietly(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_quietly(self, session_id: str) -> None:
        try:
            await self.drain(session_id)
        except (RedisError, OSError, ValueError) as exc:
            log.warning("web outbox: drain failed (%s); retried at the next presence pass",
                        type(exc).__name__)
            metrics.ERRORS.labels("webchat_outbox").inc()

    async def refresh(self) -> None:
        """One presence pass: claim the local sessions, release the ones gone, and drain any
        local session whose outbox is not empty."""
        local = self.local_sessions()
        gone = self._claimed - local
        if gone:
            async with self._redis.pipeline(transaction=False) as pipe:
                for session_id in gone:
                    pipe.zrem(presence_key(session_id), self.instance)
                await pipe.execute()
            self._claimed -= gone
        if local:
            ordered = sorted(local)
            for session_id, waiting in zip(ordered, await self._claim(ordered)):
                if waiting:
                    self._spawn_drain(session_id)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._presence / 3)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("web outbox: presence pass failed (%s)", type(exc).__name__)

    async def _listen_forever(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(WAKE_CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    data = message.get("data")
                    session_id = redis_text(data) or ""
                    if self._is_local(session_id):
                        self._spawn_drain(session_id)
            except (RedisError, OSError) as exc:
                log.warning("web outbox: wake-up subscription lost (%s); resubscribing",
                            type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """aiohttp cleanup context: listen for wake-ups and keep presence while the app runs."""
        self._redis = app[REDIS_KEY]
        workers = [asyncio.create_task(self._listen_forever()),
                   asyncio.create_task(self._refresh_forever())]
        try:
            yield
        finally:
            for task in [*workers, *self._tasks]:
                task.cancel()
            await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
            if self._claimed:
                with contextlib.suppress(RedisError, OSError):
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for session_id in self._claimed:
                            pipe.zrem(presence_key(session_id), self.instance)
                        await pipe.execute()
            self._redis = None
