"""The ``/wechat`` webhook: URL verification (GET) and message/event pushes (POST).

Every request is checked before anything else happens: body size, timestamp replay window,
``signature``, and in encrypted modes ``msg_signature`` and the AES envelope (AppID included);
compatible and safe modes accept only encrypted pushes.  Forged or malformed requests get
400/403 and a log line, and touch neither Rasa nor Redis.  Then the signed URL is spent: used
again with other content it is a replay (403); WeChat's retries repeat it with the same content
and pass on to the deduplication, which answers them ``success``.  Accepted pushes are turned
into jobs on the sender's queue (see :mod:`channels.dispatcher`) and acknowledged at once with
``success``: the answer itself goes out later through the customer-service message API, well
clear of WeChat's 5-second rule.  A push that Redis could not take is answered 503, and WeChat
retries it; effects are recorded as done only after they were written, so a retry redoes
whatever a failure interrupted.

``TEMPLATESENDJOBFINISH`` (the outcome of a template message) is recorded per msgid; when the
template carried a keyed notice (the adapter mapped its msgid to the key), the report is also
appended to ``pd:notice:reports`` (``delivered`` for ``success``; else ``undelivered`` with the
code ``user_block`` or ``system_failed``).
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Protocol

from aiohttp import web
from redis.exceptions import RedisError

from channels.digits import ascii_int
from channels.notice_reports import append_report
from channels.optout import OptOutStore
from channels.redis_text import redis_text
from channels.wechat import metrics, texts
from channels.wechat.adapter import template_notice_key
from channels.wechat.config import WeChatConfig
from channels.wechat.crypto import ForgedRequest, WeChatSecurity
from channels.wechat.dedupe import Deduper, SignedUrlLedger, content_digest, push_identity
from channels.wechat.menu import intent_of_key
from channels.wechat.xmlmsg import MalformedXml, parse_xml

log = logging.getLogger(__name__)

_OPENID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_TEMPLATE_REPORT_TTL = 7 * 86400


def template_status_key(msg_id: str) -> str:
    """Redis hash with the delivery report of template message ``msg_id``."""
    return f"pd:wechat:template:{msg_id}"


class JobQueue(Protocol):
    """Where accepted pushes go (the dispatcher)."""

    async def enqueue(self, user: str, job: dict[str, Any], once: str | None = None,
                      once_ttl_seconds: int = 3600) -> bool: ...


class BadRequest(Exception):
    """Malformed request: answered 400."""


class ReplayedRequest(ForgedRequest):
    """A signed URL used again with other content: answered 403."""


class WeChatWebhook:
    """aiohttp handlers for ``GET``/``POST /wechat`` (see module docstring)."""

    def __init__(self, config: WeChatConfig, redis: Any, queue: JobQueue) -> None:
        self.config = config
        self._redis = redis
        self._queue = queue
        self._security = WeChatSecurity(config.token, config.app_id, config.aes_keys,
                                        config.replay_window_seconds)
        self._dedupe = Deduper(redis, config.dedupe_ttl_seconds)
        self._signed_urls = SignedUrlLedger(redis, config.replay_window_seconds)
        self._optouts = OptOutStore(redis)

    # --- request checks --------------------------------------------------------------------
    def _reject(self, request: web.Request, status: int, reason: str, outcome: str | None = None) -> web.Response:
        metrics.PUSHES.labels(outcome or ("forged" if status == 403 else "malformed")).inc()
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

    async def _spend_signed_url(self, timestamp: str, nonce: str, content: dict[str, str] | str) -> None:
        """Raise ReplayedRequest when this signed URL was already used with other content."""
        if not await self._signed_urls.use(timestamp, nonce, content_digest(content)):
            raise ReplayedRequest("signed URL already used with other content (replay)")

    def _unavailable(self, what: str, exc: RedisError) -> web.Response:
        # Unacknowledged: WeChat retries, and the retry may find Redis back.
        log.error("wechat %s not accepted, Redis unavailable: %s", what, exc)
        metrics.PUSHES.labels("unavailable").inc()
        return web.Response(status=503, text="unavailable")

    async def handle_get(self, request: web.Request) -> web.Response:
        """Server URL verification: echo ``echostr`` when the signature is right."""
        try:
            timestamp, nonce = self._check_signed(request)
            echostr = request.query.get("echostr", "")
            if not echostr or len(echostr) > 512:
                raise BadRequest("missing echostr")
            await self._spend_signed_url(timestamp, nonce, echostr)
        except BadRequest as exc:
            return self._reject(request, 400, str(exc))
        except ReplayedRequest as exc:
            return self._reject(request, 403, str(exc), "replayed")
        except ForgedRequest as exc:
            return self._reject(request, 403, str(exc))
        except RedisError as exc:
            return self._unavailable("URL verification", exc)
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

    async def _verified_fields(self, request: web.Request) -> tuple[dict[str, str], str, str]:
        """The push's fields (decrypted in encrypted modes), its timestamp and nonce."""
        timestamp, nonce = self._check_signed(request)
        body = await self._read_body(request)
        try:
            outer = parse_xml(body)
        except MalformedXml as exc:
            raise BadRequest(f"malformed XML: {exc}") from exc
        encrypted = request.query.get("encrypt_type", "raw").lower() == "aes"
        mode = self.config.encrypt_mode
        if mode != "plain" and not encrypted:
            # Only msg_signature covers the body: without it the push could be anything.
            raise ForgedRequest(f"plaintext push in {mode} mode")
        if not encrypted:
            return outer, timestamp, nonce
        if not self.config.aes_keys:
            raise BadRequest("encrypted push but no WECHAT_AES_KEY configured")
        cipher, msg_signature = outer.get("Encrypt", ""), request.query.get("msg_signature", "")
        if not cipher or not msg_signature:
            raise BadRequest("encrypted push without Encrypt or msg_signature")
        plain = self._security.decrypt(cipher, msg_signature, timestamp, nonce)
        try:
            return parse_xml(plain.encode("utf-8")), timestamp, nonce
        except MalformedXml as exc:
            raise BadRequest(f"malformed decrypted XML: {exc}") from exc

    # --- POST ------------------------------------------------------------------------------
    async def handle_post(self, request: web.Request) -> web.Response:
        """Verify, deduplicate, queue and acknowledge a push."""
        with metrics.ACK_SECONDS.time():
            return await self._handle_post(request)

    async def _handle_post(self, request: web.Request) -> web.Response:
        try:
            fields, timestamp, nonce = await self._verified_fields(request)
            openid = fields.get("FromUserName", "")
            if not _OPENID.fullmatch(openid):
                raise BadRequest("missing or invalid FromUserName")
            create_time = ascii_int(fields.get("CreateTime", ""), max_digits=12)
            if not fields.get("MsgType") or create_time is None:
                raise BadRequest("missing MsgType or CreateTime")
            await self._spend_signed_url(timestamp, nonce, fields)
        except BadRequest as exc:
            return self._reject(request, 400, str(exc))
        except ReplayedRequest as exc:
            return self._reject(request, 403, str(exc), "replayed")
        except ForgedRequest as exc:
            return self._reject(request, 403, str(exc))
        except RedisError as exc:
            return self._unavailable("push", exc)

        try:
            if not await self._accept(openid, fields, create_time):
                log.info("wechat duplicate push ignored (%s)", fields.get("MsgId") or fields.get("Event"))
                metrics.PUSHES.labels("duplicate").inc()
                return web.Response(text="success")
            metrics.PUSHES.labels("accepted").inc()
        except RedisError as exc:
            return self._unavailable("push", exc)
        return web.Response(text="success")

    async def _accept(self, openid: str, f: dict[str, str], create_time: int) -> bool:
        """Queue the push's job or record its effect; False when it is a retry already handled."""
        msg_type = f["MsgType"].lower()
        meta: dict[str, Any] = {"msg_type": msg_type, "create_time": create_time}
        if f.get("MsgId"):
            meta["msg_id"] = f["MsgId"]
        if msg_type == "event":
            return await self._event(openid, f, meta, create_time)
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
        """For pushes without a job: run ``writes`` (idempotent coroutine factories) unless the
        push was handled already; it counts as handled only after all of them succeeded."""
        if await self._dedupe.seen(f):
            return False
        for write in writes:
            await write()
        return await self._dedupe.remember(f)

    async def _event(self, openid: str, f: dict[str, str], meta: dict[str, Any], create_time: int) -> bool:
        event = f.get("Event", "").lower()
        key = f.get("EventKey", "").strip()
        meta["event"] = event
        # State changes first, the deduplicating enqueue last: a failure in between leaves the
        # push unrecorded, and WeChat's retry redoes every step (each one is idempotent).
        # Opt-in and opt-out apply only when newer than the recorded opt-out (CreateTime), so a
        # late retry cannot undo a newer change.
        conversation = f"wechat:{openid}"
        if event == "subscribe":
            text = texts.WELCOME
            if key.startswith("qrscene_"):
                text += "\n" + texts.WELCOME_SCENE.format(scene=key[len("qrscene_"):][:64])
            await self._optouts.opt_in(conversation, at=create_time)
            return await self._enqueue_once(openid, _notice(text), f)
        if event == "unsubscribe":
            # A retry of an unsubscribe recorded before a re-follow is dropped as seen.
            recorded = await self._record_once(
                f, lambda: self._optouts.opt_out(conversation, at=create_time))
            if recorded:
                log.info("wechat user unsubscribed; proactive messages stopped")
            return recorded
        if event == "scan":
            return await self._enqueue_once(openid, _notice(texts.WELCOME_BACK), f)
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
            if ascii_int(msg_id, max_digits=20) is None:
                return True
            status_key = template_status_key(msg_id)
            status = f.get("Status", "")[:100]
            return await self._record_once(
                f,
                lambda: self._redis.hset(status_key, mapping={
                    "status": status, "openid": openid, "at": str(int(time.time()))}),
                lambda: self._redis.expire(status_key, _TEMPLATE_REPORT_TTL),
                lambda: self._report_notice(msg_id, status))
        log.debug("wechat event %s ignored", event)
        return True

    async def _report_notice(self, msg_id: str, status: str) -> None:
        """The template's outcome as a notice report, when it carried a keyed notice."""
        key = redis_text(await self._redis.get(template_notice_key(msg_id)))
        if key:
            code = status.removeprefix("failed:").strip().replace(" ", "_") or "unknown"
            await append_report(self._redis, key, "wechat", status == "success", code)


def _notice(text: str) -> dict[str, Any]:
    return {"kind": "notice", "text": text}
