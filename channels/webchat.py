"""The web chat channel: Rasa's socket.io protocol on ``/socket.io`` and the chat page.

Speaks what Rasa 3.6's ``SocketIOInput`` speaks (with session persistence), so the stock
rasa-webchat widget (>= 1.0.1) connects unchanged, and so does our own page at ``/`` and ``/chat``:

- ``session_request`` ``{session_id?}`` → ``session_confirm`` ``"<session id>"`` (a valid id from the
  client is kept, otherwise a new one is issued); the socket joins the room of that session, so
  every tab of one session sees the replies;
- ``user_uttered`` ``{message, session_id, customData?}`` → the router's replies, delivered
  through the delivery facade (``channels.delivery``, purpose ``reply``) and its ``web`` adapter
  (:mod:`channels.webchat_outbox`) to the session's room: one ``bot_uttered`` per message part,
  exactly as Rasa's ``SocketIOOutput``: ``{"text"}``, the last part of a text with buttons as
  ``{"text", "quick_replies": [{"content_type": "text", "title", "payload"}]}``, images as
  ``{"attachment": {"type": "image", "payload": {"src"}}}``, custom payloads as they are.

The conversation id (Rasa sender id) is ``web:<session id>``.

Limits, before anything reaches Rasa (each refused message gets :data:`RATE_LIMITED_TEXT`, a
metric and a throttled log line): token buckets in Redis per session and per client address
(shared by every gateway instance), and a cap on a session's messages waiting for their answers
in this instance. The client address (behind ``GATEWAY_TRUSTED_PROXIES``, from X-Forwarded-For)
travels to Rasa and the action server as the metadata ``client_address``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web
from prometheus_client import Counter

from channels import metrics
from channels.client_address import Network, client_address
from channels.config import GatewayConfig
from channels.keyed_lock import KeyedLocks
from channels.keys import DELIVERER_KEY, REDIS_KEY, ROUTER_KEY, WEBCHAT_KEY
from channels.messages import Message
from channels.router import log_id
from channels.webchat_outbox import WebOutbox
from channels.webchat_protocol import new_session_id, valid_session_id
from integrations.rate_limit import Bucket, TokenBuckets, address_key
from integrations.redis_url import async_client

log = logging.getLogger(__name__)

CHANNEL = "web"
STATIC_DIR = Path(__file__).resolve().parent / "static"
SOCKET_IO_JS = STATIC_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
MAX_CUSTOM_DATA_BYTES = 2048
# socket.io packets: far above any sane chat message, so oversized text still reaches the router
# and gets its polite answer; beyond it the socket is dropped by engine.io.
MAX_PACKET_BYTES = 256 * 1024

RATE_LIMITED_TEXT = "您发送消息过于频繁，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"
RATE_LIMITED = Counter("powerdesk_webchat_rate_limited_total",
                       "Web chat messages refused before Rasa, by limit (session, address, pending)",
                       ["limit"])


def _custom_data(data: dict[str, Any]) -> dict[str, Any] | None:
    value = data.get("customData", data.get("metadata"))
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_CUSTOM_DATA_BYTES:
        return None
    try:
        text.encode("utf-8")  # lone surrogates: the JSON request to Rasa could not carry them
    except UnicodeEncodeError:
        return None
    return value


def socket_client_address(environ: dict, trusted: tuple[Network, ...]) -> str:
    """The client address of a socket.io connection. engine.io's aiohttp driver puts the
    request in the environ (its REMOTE_ADDR is a constant, never the peer); other drivers
    only have REMOTE_ADDR and HTTP_X_FORWARDED_FOR."""
    request = environ.get("aiohttp.request")
    if request is not None:
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", [])) or None
        return client_address(request.remote, forwarded, trusted)
    return client_address(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), trusted)


class FanoutManager(socketio.AsyncRedisManager):
    """socket.io's Redis pub/sub manager on any REDIS_URL form (integrations/redis_url.py: one
    server, Sentinel or Cluster; python-socketio's own knows neither our Sentinel form nor a
    Cluster)."""

    def _redis_connect(self) -> None:
        self.redis = async_client(self.redis_url, **self.redis_options)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True


class WebChat:
    """The socket.io server of one gateway app and its event handlers."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        origins: Any = None  # None = same origin only (python-engineio's default)
        if config.cors_origins == ("*",):
            origins = "*"
        elif config.cors_origins:
            origins = list(config.cors_origins)
        manager = None
        if config.socketio_fanout and config.redis_url:
            # Emits travel through Redis pub/sub to every instance, so a session's room spans them.
            manager = FanoutManager(config.redis_url, channel="pd:gateway:socketio")
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=origins,
                                        client_manager=manager,
                                        max_http_buffer_size=MAX_PACKET_BYTES,
                                        logger=False, engineio_logger=False)
        self.app: web.Application | None = None  # set by setup()
        self.outbox = WebOutbox(self.sio)  # this instance's sockets' side of the web outbox
        # A session's turn covers the router call and the delivery of its answer: the router's
        # own turn ends when Rasa has answered, so without this one a session's next answer
        # could go out before the previous one (and a refusal could overtake an earlier answer).
        self._turns = KeyedLocks()
        self._transport_tasks: set[asyncio.Task] = set()
        self._buckets: TokenBuckets | None = None  # built on first use, once Redis exists
        self._limit_logged_at = float("-inf")
        self._limit_unlogged = 0
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("session_request", self.on_session_request)
        self.sio.on("user_uttered", self.on_user_uttered)

    async def on_connect(self, sid: str, environ: Any = None, auth: Any = None) -> bool:
        if await self.sio.get_session(sid):
            # A client's own event named "connect" (python-socketio dispatches it here too):
            # ignored, or its payload would pose as the environ and forge the client address.
            return False
        address = socket_client_address(environ, self.config.trusted_proxies)
        await self.sio.save_session(sid, {"client_address": address})
        log.debug("web socket %s… connected", sid[:6])  # a polling sid reads the socket's packets
        return True

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        log.debug("web socket %s… disconnected", sid[:6])

    async def _bind_session(self, sid: str, session_id: str) -> None:
        async with self.sio.session(sid) as session:
            session["session_id"] = session_id
        await self.sio.enter_room(sid, session_id)

    async def on_session_request(self, sid: str, data: Any = None) -> None:
        """Confirm the client's session id (or issue one) and join its room."""
        wanted = data.get("session_id") if isinstance(data, dict) else None
        session_id = wanted if valid_session_id(wanted) else new_session_id()
        current = (await self.sio.get_session(sid)).get("session_id")
        if current and current != session_id:
            await self.sio.leave_room(sid, current)
        await self._bind_session(sid, session_id)
        await self.sio.emit("session_confirm", session_id, to=sid)
        await self.outbox.session_joined(session_id)  # messages that waited while offline

    async def on_user_uttered(self, sid: str, data: Any = None) -> None:
        """Route one customer message and emit the replies to the session's room, in order."""
        data = data if isinstance(data, dict) else {"message": data if isinstance(data, str) else ""}
        socket_session = await self.sio.get_session(sid)
        session_id = socket_session.get("session_id")
        address = socket_session.get("client_address", "")
        if not session_id:
            # A client that skipped session_request (or a gateway restart in between): adopt
            # its id if acceptable, else issue one, and tell it which one it has.
            wanted = data.get("session_id")
            session_id = wanted if valid_session_id(wanted) else new_session_id()
            await self._bind_session(sid, session_id)
            await self.sio.emit("session_confirm", session_id, to=sid)
            await self.outbox.session_joined(session_id)
        text = data.get("message", "")
        meta: dict[str, Any] = {}
        custom = _custom_data(data)
        if custom is not None:
            meta["customData"] = custom
        if address:
            meta["client_address"] = address
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)  # a 户号 typed into a numeric field by a custom client
        elif not isinstance(text, str):
            text = ""         # None, lists, objects: treated as empty input
        message = Message(CHANNEL, session_id, text, meta=meta)
        # One message of a session at a time in this process, FIFO, delivery included, so the
        # replies reach the browser in the order the customer typed.
        try:
            if self._turns.users(session_id) >= self.config.webchat_max_pending:
                await self._refuse(sid, "pending", message, address)
                return
            async with await self._turns.acquire(session_id):
                # Inside the turn, so a refusal keeps its place among the session's replies.
                limit = await self._over_budget(message, address)
                if limit:
                    await self._refuse(sid, limit, message, address)
                    return
                replies = await self.app[ROUTER_KEY].handle(message)
                await self.app[DELIVERER_KEY].deliver(message.conversation_id, replies, "reply")
        except Exception:  # noqa: BLE001 - a broken socket must not take the server down
            log.exception("web chat failed to answer a message")
            metrics.ERRORS.labels("webchat").inc()

    async def _over_budget(self, message: Message, address: str) -> str | None:
        """Take a token from the session's and the address's buckets; the name of the budget
        that is spent (``session``, ``address``), or None."""
        buckets = []
        if self.config.webchat_rate_per_session:
            buckets.append(Bucket(f"session:{message.user_id}", self.config.webchat_rate_per_session))
        if self.config.webchat_rate_per_address and address:
            buckets.append(Bucket(f"address:{address_key(address)}",
                                  self.config.webchat_rate_per_address))
        if not buckets:
            return None
        if self._buckets is None:
            self._buckets = TokenBuckets(self.app[REDIS_KEY], "webchat")
        verdict = await self._buckets.take(buckets)
        if verdict.degraded:
            metrics.ERRORS.labels("rate_limit").inc()
        return verdict.refused_by.split(":", 1)[0] if verdict.refused_by else None

    async def _refuse(self, sid: str, limit: str, message: Message, address: str) -> None:
        """Answer a refused message with the polite limit reply, count it and log it (one log
        line per second at most: a flood must not flood the logs too)."""
        RATE_LIMITED.labels(limit).inc()
        now = time.monotonic()
        if now - self._limit_logged_at >= 1.0:
            log.warning("web chat %s limit: refused a message of %s from %s "
                        "(and %d more since the last such line)",
                        limit, log_id(message.conversation_id), address or "an unknown address",
                        self._limit_unlogged)
            self._limit_logged_at, self._limit_unlogged = now, 0
        else:
            self._limit_unlogged += 1
        await self.sio.emit("bot_uttered", {"text": RATE_LIMITED_TEXT}, to=sid)

    async def on_shutdown(self, _app: web.Application) -> None:
        """Close every socket at the transport level: browsers reconnect (to another instance
        or to this one restarted) and keep their session, and the server need not wait for
        long-lived websockets to end."""
        if self.sio.eio.sockets:
            await self.sio.eio.disconnect()
        await self.sio.shutdown()
        # engine.io keeps a closed websocket's handler waiting for the browser's next ping
        # (up to 45 s), which would hold up the server's shutdown: end those handlers now.
        await asyncio.sleep(0.1)
        for task in list(self._transport_tasks):
            task.cancel()

    @web.middleware
    async def track_transports(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Remember the handler tasks of socket.io requests so shutdown can end them."""
        if not request.path.startswith("/socket.io"):
            return await handler(request)
        task = asyncio.current_task()
        self._transport_tasks.add(task)
        try:
            return await handler(request)
        finally:
            self._transport_tasks.discard(task)


async def chat_page(_request: web.Request) -> web.FileResponse:
    """The Chinese chat page."""
    return web.FileResponse(STATIC_DIR / "index.html", headers={
        "Cache-Control": "no-cache",
        "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                    "img-src 'self' data: https:; connect-src 'self' ws: wss:; "
                                    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    })


async def socket_io_js(_request: web.Request) -> web.StreamResponse:
    """The socket.io browser client from the npm package (``npm ci --prefix channels/static``)."""
    if not SOCKET_IO_JS.is_file():
        raise web.HTTPNotFound(text="socket.io client not installed: npm ci --prefix channels/static")
    return web.FileResponse(SOCKET_IO_JS, headers={"Cache-Control": "public, max-age=86400",
                                                   "Content-Type": "text/javascript"})


def setup(app: web.Application, config: GatewayConfig) -> WebChat:
    """Attach socket.io at ``/socket.io`` and serve the chat page at ``/`` and ``/chat``."""
    webchat = WebChat(config)
    webchat.app = app
    app[WEBCHAT_KEY] = webchat
    webchat.sio.attach(app, socketio_path="socket.io")
    app.on_shutdown.append(webchat.on_shutdown)
    app.middlewares.append(webchat.track_transports)
    app.cleanup_ctx.append(webchat.outbox.lifespan)
    app.router.add_get("/", chat_page)
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/static/socket.io.min.js", socket_io_js)
    app.router.add_get("/static/chat.js", _static_file("chat.js", "text/javascript"))
    app.router.add_get("/static/chat.css", _static_file("chat.css", "text/css"))
    if not SOCKET_IO_JS.is_file():
        log.warning("web chat page needs the socket.io client: run `npm ci --prefix channels/static`")
    return webchat


def _static_file(name: str, content_type: str):
    path = STATIC_DIR / name

    async def serve(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={"Cache-Control": "no-cache",
                                               "Content-Type": content_type})
    return serve
