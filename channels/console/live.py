"""The console's live channel: a WebSocket at ``/console/api/live``.

Each gateway instance tails the hand-off events stream (``pd:{handoff}:events``) once and fans
every event out to its own sockets whose user may see it (:func:`channels.console.desk.can_see`:
the queue, the agent holding the conversation, or supervisor), so an agent connected to
instance B sees a customer who wrote to instance A. Frames are JSON text:

* server → client: ``{"type": "hello", "user", "last_event_id"}`` once; then one frame per
  event: the event's fields (``type``: requested, taken_over, claimed, transferred, closed,
  message, rated, finished; ``cid``, ``queue``, ``agent``, ``handoff_id``, ``at``, and per type
  ``sender``/``text``/``msg_id``, ``from_queue``/``from_agent``, ``score``/``comment``,
  ``channel``/``customer_type``/``reason``) plus ``id`` (the stream id); ``{"type": "pong"}``;
  ``{"type": "ack", "ref", ...}`` / ``{"type": "error", "ref", "status", "error"}`` answering a
  client's ``reply``.
* client → server: ``{"type": "ping"}``; ``{"type": "reply", "cid", "text", "ref"}`` (the same
  as ``POST /console/api/conversations/<cid>/messages``).

The session is checked when the socket opens (the API middleware), then at least every
:data:`SESSION_CHECK_SECONDS`, and before a reply unless checked within :data:`REPLY_CHECK_SECONDS`
(replies slide its idle timer); an ended session closes the socket with code 4401. A client too
slow to take its frames is closed with 4408 (it reconnects and reloads the lists).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from channels.console import metrics
from channels.console.auth import User
from channels.console.desk import Answer, can_see
from channels.handoff.store import HandoffStore

log = logging.getLogger(__name__)

SESSION_CHECK_SECONDS = 30.0
REPLY_CHECK_SECONDS = 5.0  # a burst of replies checks (and slides) the session once
BLOCK_MS = 1000
CLIENT_BACKLOG = 1000
CLOSE_SESSION_ENDED = 4401
CLOSE_TOO_SLOW = 4408
_NUMBERS = {"at": float, "score": int}
HOLDING_EVENTS = frozenset({"requested", "taken_over", "claimed", "transferred"})
RELEASING_EVENTS = frozenset({"closed", "finished", "cancelled", "rated"})
MAX_HOLDERS = 100_000


class LiveClient:
    """One socket: its user and an outgoing queue drained by its own writer task (one writer
    per socket, so frames never interleave and a slow socket never holds up the others)."""

    def __init__(self, ws: web.WebSocketResponse, user: User) -> None:
        self.ws = ws
        self.user = user
        self._frames: asyncio.Queue[str | None] = asyncio.Queue(CLIENT_BACKLOG)
        self._writer = asyncio.create_task(self._write())
        self._closing: asyncio.Task | None = None
        self.checked = time.monotonic()  # when the session was last found alive

    def push(self, frame: dict[str, Any] | str) -> None:
        """Queue a frame (a dict, or its JSON text when the same frame goes to many sockets)."""
        if self._closing is not None:
            return
        try:
            self._frames.put_nowait(frame if isinstance(frame, str) else _dumps(frame))
        except asyncio.QueueFull:
            log.warning("console live: %s's socket is too slow; closing it", self.user.name)
            metrics.LIVE_DROPPED.inc()
            self._closing = asyncio.create_task(self.ws.close(code=CLOSE_TOO_SLOW, message=b"too slow"))

    async def _write(self) -> None:
        while True:
            frame = await self._frames.get()
            if frame is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    async def stop(self) -> None:
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)


class LiveHub:
    """The sockets of one gateway instance and the tail of the events stream feeding them."""

    def __init__(self, store: HandoffStore) -> None:
        self.store = store
        self.clients: set[LiveClient] = set()
        self.last_id = "0-0"
        self._holders: dict[str, str] = {}  # cid → the agent holding it ("" = nobody)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start tailing the events stream (from its newest entry)."""
        self._task = asyncio.create_task(self._tail())

    async def stop(self) -> None:
        """Stop the tail."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def close_all(self) -> None:
        """Close every socket (browsers reconnect, to another instance too), so the server need
        not wait for them."""
        for client in list(self.clients):
            await client.ws.close(code=1001, message=b"server shutdown")
            await client.stop()

    async def _tail(self) -> None:
        started = False
        while True:
            try:
                if not started:
                    self.last_id, started = await self.store.last_event_id(), True
                events = await self.store.events(self.last_id, block_ms=BLOCK_MS)
                for event_id, event in events:
                    self.last_id = event_id
                    await self.fan_out(event_id, event)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                log.warning("console live: reading the hand-off events failed (%s); retrying",
                            type(exc).__name__)
                metrics.ERRORS.labels("live_tail").inc()
                await asyncio.sleep(1.0)
            except Exception:  # noqa: BLE001 - the tail must outlive one bad event
                log.exception("console live: an event could not be fanned out")
                metrics.ERRORS.labels("live_fanout").inc()
                await asyncio.sleep(0.1)

    async def _holder(self, event: dict[str, str]) -> str:
        """The agent holding the event's conversation: the events keep a per-instance map
        current (every instance reads every event, in order); a customer's message of a
        conversation not in the map asks the store once."""
        cid, kind = event.get("cid", ""), event.get("type")
        if kind in HOLDING_EVENTS:
            self._holders[cid] = event.get("agent") or ""
        elif kind in RELEASING_EVENTS:
            self._holders.pop(cid, None)
        elif kind == "message" and not event.get("agent") and cid:
            if cid not in self._holders:
                if len(self._holders) > MAX_HOLDERS:
                    self._holders.clear()
                stored = await self.store.get(cid) or {}
                self._holders[cid] = stored.get("agent") or ""
            return self._holders[cid]
        return event.get("agent") or ""

    async def fan_out(self, event_id: str, event: dict[str, str]) -> None:
        holder = await self._holder(event)  # also when no socket is open: the map stays current
        if not self.clients:
            return
        holder = await self._holder(event)
        frame: dict[str, Any] = {**event, "id": event_id}
        for name, parse in _NUMBERS.items():
            try:
                if name in frame:
                    frame[name] = parse(frame[name])
            except ValueError:
                pass
        text = _dumps(frame)  # once for every socket
        for client in list(self.clients):
            user = client.user
            if (can_see(user, event.get("queue"), holder) or event.get("from_agent") == user.name
                    or (event.get("from_queue") or "") in user.queues):
                client.push(text)
                metrics.LIVE_FRAMES.inc()


async def live_socket(request: web.Request, hub: LiveHub, user: User,
                      session_user: Callable[[bool], Awaitable[User | None]],
                      reply: Callable[[User, str, Any], Awaitable[Answer]]) -> web.StreamResponse:
    """Serve one console socket (the caller has checked the session and the Origin).
    ``session_user(touch)`` gives the session's user as stored now (None: the session ended), so
    a change of the user's queues or role applies to the socket within a check."""
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    client = LiveClient(ws, user)
    hub.clients.add(client)
    metrics.LIVE_SOCKETS.inc()
    client.push({"type": "hello", "user": user.to_json(), "last_event_id": hub.last_id})
    try:
        while not ws.closed:
            try:
                message = await ws.receive(timeout=SESSION_CHECK_SECONDS)
            except asyncio.TimeoutError:
                message = None
            if time.monotonic() - client.checked >= SESSION_CHECK_SECONDS or message is None:
                current = await session_user(False)
                if current is None:
                    await ws.close(code=CLOSE_SESSION_ENDED, message=b"session ended")
                    break
                client.user, client.checked = current, time.monotonic()
            if message is None:
                continue
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if message.type == WSMsgType.TEXT:
                await _client_frame(client, message.data, session_user, reply)
    finally:
        hub.clients.discard(client)
        metrics.LIVE_SOCKETS.dec()
        await client.stop()
    return ws


async def _client_frame(client: LiveClient, data: str, session_user, reply) -> None:
    try:
        frame = json.loads(data)
    except ValueError:
        frame = None
    if not isinstance(frame, dict):
        client.push({"type": "error", "ref": None, "status": 400, "error": "bad_frame"})
        return
    ref = frame.get("ref")
    if frame.get("type") == "ping":
        client.push({"type": "pong", "ref": ref})
    elif frame.get("type") == "reply":
        if time.monotonic() - client.checked >= REPLY_CHECK_SECONDS:
            current = await session_user(True)  # a reply is activity: the idle timer restarts
            if current is None:
                await client.ws.close(code=CLOSE_SESSION_ENDED, message=b"session ended")
                return
            client.user, client.checked = current, time.monotonic()
        current = client.user
        cid = frame.get("cid") if isinstance(frame.get("cid"), str) else ""
        try:
            status, body = await reply(current, cid, frame.get("text"))
        except (RedisError, OSError) as exc:
            log.warning("console live: a reply failed: Redis %s", type(exc).__name__)
            status, body = 503, {"error": "unavailable"}
        if status == 200:
            client.push({"type": "ack", "ref": ref, "cid": cid, **body})
        else:
            client.push({"type": "error", "ref": ref, "cid": cid, "status": status, **body})
    else:
        client.push({"type": "error", "ref": ref, "status": 400, "error": "unknown_type"})


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False)
