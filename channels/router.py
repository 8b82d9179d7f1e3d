"""The conversation router: every channel hands its customer messages to ``handle()``.

It cleans the text, answers empty and oversized input itself, serialises each conversation
(a local FIFO lock plus a Redis lock shared by every gateway instance, with a bounded wait),
forwards the rest to Rasa's REST channel and turns the answer into :class:`Reply` objects.
Each message also marks the conversation as used now and carries the last notice the
conversation received to Rasa as ``metadata["notice"]`` (see :mod:`channels.notice_context`).
It never raises to a channel: every failure becomes a polite Chinese reply, a log line and a
metric.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

from channels import metrics
from channels.keyed_lock import Held, KeyedLocks
from channels.messages import Button, Message, Reply
from channels.notice_context import SEEN_TTL_SECONDS, decode_notice, notice_key, seen_key
from channels.rasa_client import RasaClient, RasaUnavailable
from integrations.masking import log_conversation_id

log = logging.getLogger(__name__)

BUSY_TEXT = "系统繁忙，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"
EMPTY_TEXT = "您好，请输入您要咨询的问题，例如“查电费”“停电查询”“营业厅排队”。"
TOO_LONG_TEXT = ("您发送的内容较长（{length}字），超过了{limit}字的限制。请精简后重新发送，"
                 "或简要说明您要咨询的问题，例如“查电费”“故障报修”“投诉建议”。")
NO_ANSWER_TEXT = ("抱歉，我暂时没能回答您的问题。您可以换个说法再试一次，"
                  "或拨打95598供电服务热线咨询。")

# C0/C1 controls (except \t \n \r, handled below), bidi overrides/isolates that can make a
# text display differently from what it says, BOM, and lone surrogates. Zero-width joiners and
# variation selectors stay: emoji sequences need them.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_NEWLINES = re.compile(r"\r\n?")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str | None) -> str:
    """``text`` without control characters, with ``\\n`` line ends, tabs as spaces, stripped."""
    if not text:
        return ""
    text = _CONTROL.sub("", _NEWLINES.sub("\n", str(text)).replace("\t", " "))
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def replies_from_rasa(answer: list[dict[str, Any]]) -> list[Reply]:
    """Rasa REST messages (``text``, ``buttons``, ``image``, ``custom``, ``attachment``) → Replies."""
    replies: list[Reply] = []
    for item in answer:
        text = item.get("text")
        text = text if isinstance(text, str) else ("" if text is None else str(text))
        buttons = tuple(
            Button(str(b["title"]), str(b.get("payload") or b["title"]))
            for b in (item.get("buttons") or ())
            if isinstance(b, dict) and b.get("title")
        )
        image = item.get("image") if isinstance(item.get("image"), str) else None
        custom = item.get("custom") if isinstance(item.get("custom"), dict) else None
        if custom is None and isinstance(item.get("attachment"), (dict, str)):
            custom = {"attachment": item["attachment"]}
        if text or buttons or image or custom:
            replies.append(Reply(text, buttons, image, custom))
    return replies


# A conversation id as it may appear in logs (the one rule of the gateway and the action server):
# phones/户号 masked, web session ids (bearer secrets) shortened to a prefix.
log_id = log_conversation_id


class TurnTimeout(Exception):
    """The conversation's previous message was still being answered after the bounded wait."""


class ConversationRouter:
    """Route channel messages to Rasa, one message at a time per conversation."""

    def __init__(self, rasa: RasaClient, redis: Redis, *, max_message_chars: int = 1000,
                 lock_wait_seconds: float = 20.0, lock_ttl_seconds: float = 20.0) -> None:
        self._rasa = rasa
        self._redis = redis
        self.max_message_chars = max_message_chars
        self._lock_wait = lock_wait_seconds
        self._lock_ttl = lock_ttl_seconds
        self._local = KeyedLocks()
        self._releasing: set[asyncio.Task] = set()
        # The hand-off hook (channels.handoff.service.HandoffService.divert), set by the app:
        # a handed-off conversation's messages go to its agent, never to Rasa.
        self.handoff: Any = None

    async def close(self) -> None:
        """Wait for conversation locks still being released (call before closing Redis)."""
        if self._releasing:
            await asyncio.gather(*list(self._releasing), return_exceptions=True)

    async def handle(self, message: Message) -> list[Reply]:
        """Answer one customer message; never raises (except cancellation)."""
        channel = message.channel
        metrics.MESSAGES_IN.labels(channel).inc()
        try:
            replies = await self._handle(message)
        except Exception:  # noqa: BLE001 - the customer must hear back whatever broke
            log.exception("router failed for %s", log_id(message.conversation_id))
            metrics.ERRORS.labels("router").inc()
            metrics.BUSY_REPLIES.labels(channel, "error").inc()
            replies = [Reply(BUSY_TEXT)]
        metrics.MESSAGES_OUT.labels(channel).inc(len(replies))
        return replies

    async def _handle(self, message: Message) -> list[Reply]:
        channel, conversation_id = message.channel, message.conversation_id
        raw = message.payload if message.payload else message.text
        raw = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
        limit = self.max_message_chars
        text = clean_text(raw)
        if not text:
            metrics.REJECTED.labels(channel, "empty").inc()
            return [Reply(EMPTY_TEXT)]
        if len(text) > limit:
            metrics.REJECTED.labels(channel, "too_long").inc()
            log.info("%s sent %d characters (limit %d); asked to shorten it",
                     log_id(conversation_id), len(text), limit)
            return [Reply(TOO_LONG_TEXT.format(length=len(text), limit=limit))]
        if self.handoff is not None:
            diverted = await self.handoff.divert(message)
            if diverted is not None:
                return diverted
        metadata = dict(message.meta)
        metadata.setdefault("channel", channel)
        metadata.pop("notice", None)  # only ever the gateway's own record
        try:
            async with self._turn(conversation_id):
                # In the turn: an await before it would reorder a conversation's messages.
                notice = await self._seen_and_notice(conversation_id)
                if notice is not None:
                    metadata["notice"] = notice
                answer = await self._rasa.send(conversation_id, text, metadata)
        except TurnTimeout:
            log.warning("%s: previous message still in progress after %.1fs; busy reply",
                        log_id(conversation_id), self._lock_wait)
            metrics.BUSY_REPLIES.labels(channel, "turn_timeout").inc()
            return [Reply(BUSY_TEXT)]
        except RasaUnavailable as exc:
            log.warning("Rasa unavailable for %s (%s); busy reply", log_id(conversation_id), exc)
            metrics.BUSY_REPLIES.labels(channel, exc.reason).inc()
            return [Reply(BUSY_TEXT)]
        replies = replies_from_rasa(answer)
        if not replies:
            log.info("Rasa answered nothing to %s", log_id(conversation_id))
            metrics.EMPTY_ANSWERS.labels(channel).inc()
            return [Reply(NO_ANSWER_TEXT)]
        return replies

    async def _seen_and_notice(self, conversation_id: str) -> dict[str, Any] | None:
        """One round trip: mark the conversation as used now (``pd:seen:<cid>``, for the
        broadcasts' channel choice) and read the last notice it received (``pd:notice:last:<cid>``,
        Rasa's ``metadata["notice"]``). A Redis failure costs only the context, not the message."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(seen_key(conversation_id), str(int(time.time())), ex=SEEN_TTL_SECONDS)
                pipe.get(notice_key(conversation_id))
                _, raw = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("conversation context of %s unavailable (%s); message goes on without it",
                        log_id(conversation_id), type(exc).__name__)
            metrics.ERRORS.labels("notice_context").inc()
            return None
        return decode_notice(raw)

    @contextlib.asynccontextmanager
    async def _turn(self, conversation_id: str) -> AsyncIterator[None]:
        """Hold the conversation's turn: FIFO inside this process, exclusive across processes.

        The Redis lock is released off the reply's critical path (a background task); the local
        lock is only freed after that, so the conversation's next message still waits for it.
        """
        started = time.perf_counter()
        try:
            held = await self._local.acquire(conversation_id, self._lock_wait)
        except asyncio.TimeoutError:
            raise TurnTimeout(conversation_id) from None
        try:
            remaining = max(0.0, self._lock_wait - (time.perf_counter() - started))
            lock = await self._acquire_shared(conversation_id, remaining)
        except BaseException:
            held.release()
            raise
        metrics.LOCK_WAIT.observe(time.perf_counter() - started)
        try:
            yield
        finally:
            if lock is None:
                held.release()
            else:
                task = asyncio.create_task(self._release(lock, held))
                self._releasing.add(task)
                task.add_done_callback(self._releasing.discard)

    async def _release(self, lock: Any, held: Held) -> None:
        try:
            await lock.release()
        except (LockError, RedisError) as exc:
            # Expired (held longer than its TTL) or Redis gone: the lock frees itself anyway.
            log.warning("conversation lock release failed (%s)", type(exc).__name__)
        finally:
            held.release()

    async def _acquire_shared(self, conversation_id: str, wait: float) -> Any:
        """The Redis lock of the conversation, or None when Redis itself failed (degraded)."""
        lock = self._redis.lock(f"pd:gateway:turn:{conversation_id}", timeout=self._lock_ttl,
                                sleep=0.01, blocking=True, blocking_timeout=wait)
        try:
            acquired = await lock.acquire()
        except RedisError as exc:
            # Without Redis, Rasa's own lock store fails too; still let Rasa decide rather than
            # refusing here, and make the failure visible.
            log.error("conversation lock unavailable (%s); continuing without it",
                      type(exc).__name__)
            metrics.ERRORS.labels("redis_lock").inc()
            return None
        if not acquired:
            raise TurnTimeout(conversation_id)
        return lock
