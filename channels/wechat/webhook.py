"""The ``/wechat`` webhook: URL verification (GET) and message/event pushes (POST).

Every request is checked before anything else happens: body size, timestamp replay window,
``signature``, and in encrypted modes ``msg_signature`` and the AES envelope (AppID included).
Forged or malformed requests get 400/403 and a log line, and touch neither Rasa nor Redis.
Accepted pushes are deduplicated in Redis, turned into jobs on the sender's queue (see
:mod:`channels.wechat.dispatcher`) and acknowledged at once with ``success``: the answer itself
goes out later through the customer-service message API, well clear of WeChat's 5-second rule.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Protocol

from aiohttp import web
from redis.exceptions import RedisError

from channels.wechat import metrics, texts
from channels.wechat.config import WeChatConfig
from channels.wechat.crypto import ForgedRequest, WeChatSecurity
from channels.wechat.dedupe import Deduper, push_identity
from channels.wechat.menu import intent_of_key
from channels.wechat.xmlmsg import MalformedXml, parse_xml

log = logging.getLogger(__name__)

_OPENID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_TEMPLATE_REPORT_TTL = 7 * 86400


def optout_key(openid: str) -> str:
    """Redis key present while ``openid`` has unsubscribed: broadcasts must skip them."""
    return f"pd:optout:wechat:{openid}"


def template_status_key(msg_id: str) -> str:
    """Redis hash with the delivery report of template message ``msg_id``."""
    return f"pd:wechat:template:{msg_id}"


class JobQueue(Protocol):
    """Where accepted pushes go (the dispatcher)."""

    async def enqueue(self, user: str, job: dict[str, Any], once: str | None = None,
                      once_ttl_seconds: int = 3600) -> bool: ...


class BadRequest(Exception):
    """Malformed request: answered 400."""


class WeChatWebhook:
    """aiohttp handlers for ``GET``/``POST /wechat`` (see module docstring)."""

    def __init__(self, config: WeChatConfig, redis: Any, queue: JobQueue) -> None:
        self.config = config
        self._redis = redis
        self._queue = queue
        self._security = WeChatSecurity(config.token, config.app_id, config.aes_keys,
                                        config.replay_window_seconds)
        self._dedupe = Deduper(redis, config.dedupe_ttl_seconds)

    # --- request checks --------------------------------------------------------------------
    def _reject(self, request: web.Request, status: int, reason: str) -> web.Response:
        metrics.PUSHES.labels("forged" if status == 403 else "malformed").inc()
        log.warning("wechat webhook rejected %s %s from %s: %s", request.method, request.path,
                    request.remote, reason)
        return web.Response(status=status, text="forbidden" if status == 403 else "bad request")

    def _check_signed(self, request: web.Request) -> tuple[str, str]:
        q = request.query
        signature, timestamp, nonce = q.get("signature", ""), q.get("timestamp", ""), q.get("nonce", "")
        if not signature or not timestamp or not nonce or len(nonce) > 64 or len(signature) > 64:
            raise BadRequest("missing signature, timestamp or nonce")
        self._security.check_timestamp(timestamp)
        self._security.check_signature(signature, timestamp, nonce)
        return timestamp, nonce

    async def handle_get(self, request: web.Request) -> web.Response:
        """Server URL verification: echo ``echostr`` when the signature is right."""
        try:
            self._check_signed(request)
        except BadRequest as exc:
            return self._reject(request, 400, str(exc))
        except ForgedRequest as exc:
            return self._reject(request, 403, str(exc))
        echostr = request.query.get("echostr", "")
        if not echostr or len(echostr) > 512:
            return self._reject(request, 400, "missing echostr")
        log.info("wechat server URL verified")
        return web.Response(text=echostr)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BadRequest(f"body larger than {limit} bytes")
        body = bytearray()
        while True:
            chunk = await request.content.read(limit + 1 - len(body))
            if not chunk:
                break
            body.extend(chunk)
            if len(body) > limit:
                raise BadRequest(f"body larger than {limit} bytes")
        if not body:
            raise BadRequest("empty body")
        return bytes(body)

    async def _verified_fields(self, request: web.Request) -> dict[str, str]:
        timestamp, nonce = self._check_signed(request)
        body = await self._read_body(request)
        try:
            outer = parse_xml(body)
        except MalformedXml as exc:
            raise BadRequest(f"malformed XML: {exc}") from exc
        encrypted = request.query.get("encrypt_type", "raw").lower() == "aes"
        mode = self.config.encrypt_mode
        if mode == "safe" and not encrypted:
            raise ForgedRequest("plaintext push in safe mode")
        if not encrypted:
            return outer
        if not self.config.aes_keys:
            raise BadRequest("encrypted push but no WECHAT_AES_KEY configured")
        cipher, msg_signature = outer.get("Encrypt", ""), request.query.get("msg_signature", "")
        if not cipher or not msg_signature:
            raise BadRequest("encrypted push without Encrypt or msg_signature")
        plain = self._security.decrypt(cipher, msg_signature, timestamp, nonce)
        try:
            return parse_xml(plain.encode("utf-8"))
        except MalformedXml as exc:
            raise BadRequest(f"malformed decrypted XML: {exc}") from exc

    # --- POST ------------------------------------------------------------------------------
    async def handle_post(self, request: web.Request) -> web.Response:
        """Verify, deduplicate, queue and acknowledge a push."""
        with metrics.ACK_SECONDS.time():
            return await self._handle_post(request)

    async def _handle_post(self, request: web.Request) -> web.Response:
        try:
            fields = await self._verified_fields(request)
            openid = fields.get("FromUserName", "")
            if not _OPENID.match(openid):
                raise BadRequest("missing or invalid FromUserName")
            if not fields.get("MsgType") or not fields.get("CreateTime", "").isdigit():
                raise BadRequest("missing MsgType or CreateTime")
        except BadRequest as exc:
            return self._reject(request, 400, str(exc))
        except ForgedRequest as exc:
            return self._reject(request, 403, str(exc))

        try:
            if not await self._accept(openid, fields):
                log.info("wechat duplicate push ignored (%s)", fields.get("MsgId") or fields.get("Event"))
                metrics.PUSHES.labels("duplicate").inc()
                return web.Response(text="success")
            metrics.PUSHES.labels("accepted").inc()
        except RedisError as exc:
            # Unacknowledged: WeChat retries, and the retry may find Redis back.
            log.error("wechat push not accepted, Redis unavailable: %s", exc)
            metrics.PUSHES.labels("unavailable").inc()
            return web.Response(status=503, text="unavailable")
        return web.Response(text="success")

    async def _accept(self, openid: str, f: dict[str, str]) -> bool:
        """Queue the push's job or record its effect; False when it is a retry already handled."""
        msg_type = f["MsgType"].lower()
        meta: dict[str, Any] = {"msg_type": msg_type, "create_time": int(f["CreateTime"])}
        if f.get("MsgId"):
            meta["msg_id"] = f["MsgId"]
        if msg_type == "event":
            return await self._event(openid, f, meta)
        if msg_type == "text":
            job = {"kind": "text", "text": f.get("Content", ""), "meta": meta}
        elif msg_type == "voice" and f.get("Recognition", "").strip():
            meta["voice"] = True
            job = {"kind": "text", "text": f["Recognition"].strip(), "meta": meta}
        elif msg_type == "voice":
            job = _notice(texts.VOICE_UNRECOGNISED)
        elif msg_type == "image":
            job = _notice(texts.IMAGE)
        elif msg_type == "location":
            label = f.get("Label", "").strip() or f"{f.get('Location_X', '')},{f.get('Location_Y', '')}"
            job = _notice(texts.LOCATION.format(label=label[:100]))
        elif msg_type == "link":
            job = _notice(texts.LINK.format(title=f.get("Title", "").strip()[:60] or "链接"))
        else:  # video, shortvideo, file, ...
            job = _notice(texts.UNSUPPORTED)
        return await self._enqueue_once(openid, job, f)

    async def _enqueue_once(self, openid: str, job: dict[str, Any], f: dict[str, str]) -> bool:
        return await self._queue.enqueue(openid, job, once=push_identity(f),
                                         once_ttl_seconds=self.config.dedupe_ttl_seconds)

    async def _record_once(self, f: dict[str, str], *writes: Any) -> bool:
        """For pushes without a job: run ``writes`` (coroutine factories) unless already done."""
        if not await self._dedupe.first_time(f):
            return False
        try:
            for write in writes:
                await write()
        except BaseException:
            await self._dedupe.forget(f)
            raise
        return True

    async def _event(self, openid: str, f: dict[str, str], meta: dict[str, Any]) -> bool:
        event = f.get("Event", "").lower()
        key = f.get("EventKey", "").strip()
        meta["event"] = event
        if event == "subscribe":
            text, scene = texts.WELCOME, ""
            if key.startswith("qrscene_"):
                scene = key[len("qrscene_"):][:64]
                text += "\n" + texts.WELCOME_SCENE.format(scene=scene)
            if not await self._enqueue_once(openid, _notice(text), f):
                return False
            # After queueing, so a late retry of an old subscribe cannot undo a newer unsubscribe.
            await self._redis.delete(optout_key(openid))
            if scene:
                await self._redis.set(f"pd:wechat:scene:{openid}", scene, ex=30 * 86400)
            return True
        if event == "unsubscribe":
            recorded = await self._record_once(
                f, lambda: self._redis.set(optout_key(openid), str(int(time.time()))))
            if recorded:
                log.info("wechat user unsubscribed; proactive messages stopped")
            return recorded
        if event == "scan":
            if not await self._enqueue_once(openid, _notice(texts.WELCOME_BACK), f):
                return False
            if key:
                await self._redis.set(f"pd:wechat:scene:{openid}", key[:64], ex=30 * 86400)
            return True
        if event == "click":
            intent = intent_of_key(key)
            if intent is None:
                log.warning("wechat menu key %r is not an intent key", key[:128])
                return await self._enqueue_once(openid, _notice(texts.MENU_UNAVAILABLE), f)
            meta["menu_key"] = key
            return await self._enqueue_once(openid, {"kind": "payload", "payload": f"/{intent}",
                                                     "text": f"/{intent}", "meta": meta}, f)
        if event == "templatesendjobfinish":
            msg_id = f.get("MsgID") or f.get("MsgId") or ""
            if not msg_id.isdigit():
                return True
            status_key = template_status_key(msg_id)
            return await self._record_once(
                f,
                lambda: self._redis.hset(status_key, mapping={
                    "status": f.get("Status", "")[:100], "openid": openid, "at": str(int(time.time()))}),
                lambda: self._redis.expire(status_key, _TEMPLATE_REPORT_TTL))
        log.debug("wechat event %s ignored", event)
        return True


def _notice(text: str) -> dict[str, Any]:
    return {"kind": "notice", "text": text}
