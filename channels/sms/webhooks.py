"""Inbound SMS provider callbacks: uplink (上行/MO) and delivery reports, for both providers.

Paths: ``/sms/aliyun/up``, ``/sms/aliyun/report``, ``/sms/tencent/up``, ``/sms/tencent/report``.

Formats (providers' documentation):
- Aliyun HTTP batch push (消息推送, HTTP批量推送模式): a JSON array. SmsUp items
  ``{phone_number, send_time, content, sign_name, dest_code, sequence_id}``; SmsReport items
  ``{phone_number, send_time, report_time, success, err_code, err_msg, sms_size, biz_id, out_id}``.
  Acknowledgement ``{"code": 0, "msg": "成功"}``; a non-200 answer makes Aliyun push again.
- Tencent: 短信回执 is a JSON array of ``{user_receive_time, nationcode, mobile, report_status,
  errmsg, description, sid}``; 短信回复 is one JSON object ``{extend, mobile, nationcode, sign,
  text, time}`` (an array of them is accepted too). Acknowledgement ``{"result": 0,
  "errmsg": "OK"}``.

Neither provider signs these callbacks, so each URL must carry the shared secret
``?token=<SMS_CALLBACK_TOKEN>`` (compared in constant time) and, when SMS_CALLBACK_ALLOWED_IPS is
set, come from one of those addresses (the client address: the peer, or the X-Forwarded-For hop
vouched for by GATEWAY_TRUSTED_PROXIES; ``::ffff:a.b.c.d`` is a.b.c.d). Numbers and times in
the items count only when written in ASCII digits; other items are skipped as malformed.

Provider pushes are retried and may repeat or arrive out of order: uplinks are de-duplicated in
Redis, reports are applied idempotently by time. Each uplink item is queued on its number's
queue of the SMS dispatcher (:mod:`channels.dispatcher`) and marked seen in the same atomic step
(in send order), so when Redis fails part-way through a batch the push is answered with an error
(the provider pushes it again), the items already queued are duplicates on that retry and the
others are queued then. The provider is answered as soon as the items are queued (it waits a few
seconds at most, the assistant may take longer); the dispatcher answers a number's messages one
at a time, in order, on whichever gateway instance takes that number.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from redis.exceptions import RedisError

from channels.client_address import Network, address_in, client_address
from channels.digits import ascii_int
from channels.dispatcher import Dispatcher
from channels.sms import metrics
from channels.sms.config import SmsConfig
from channels.sms.outbox import DeliveryReport, Outbox
from channels.sms.phones import mask, normalise_phone

log = logging.getLogger("channels.sms.webhooks")

DEDUPE_TTL = 2 * 86400
PROVIDER_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
# What a Redis outage looks like to a handler: answered with an error, so the provider retries.
STORE_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
ACK = {"aliyun": {"code": 0, "msg": "成功"}, "tencent": {"result": 0, "errmsg": "OK"}}


def _error(provider: str, status: int, message: str) -> web.Response:
    body = {"code": 1, "msg": message} if provider == "aliyun" else {"result": 1, "errmsg": message}
    return web.json_response(body, status=status)


def _provider_time(value: Any) -> str:
    """A provider's "YYYY-MM-DD HH:MM:SS" in ASCII digits, else ""."""
    return value if isinstance(value, str) and PROVIDER_TIME.fullmatch(value) else ""


def _text(value: Any) -> str | None:
    """An SMS text as it can travel on (JSON may carry lone surrogates, which cannot)."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


class SmsWebhooks:
    """The four callback handlers of one gateway instance."""

    def __init__(self, config: SmsConfig, redis, outbox: Outbox, dispatcher: Dispatcher,
                 trusted_proxies: tuple[Network, ...] = ()) -> None:
        self.config = config
        self.trusted_proxies = trusted_proxies
        self.redis = redis
        self.outbox = outbox
        self.dispatcher = dispatcher
        self._queued: set[str] = set()  # numbers this instance queued messages for (drain())
        self._tz = ZoneInfo(config.timezone)

    # -- shared checks -------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        token = self.config.callback_token
        given = request.query.get("token", "")
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return False
        if self.config.callback_allowed_ips:
            return address_in(self._client(request), self.config.callback_allowed_ips)
        return True

    def _client(self, request: web.Request) -> str:
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", [])) or None
        return client_address(request.remote, forwarded, self.trusted_proxies)

    async def _items(self, provider: str, kind: str,
                     request: web.Request) -> list[dict] | web.Response:
        if not self._authorised(request):
            metrics.CALLBACKS.labels(provider, kind, "forged").inc()
            log.warning("sms %s callback refused from %s: bad token or address", provider,
                        self._client(request) or request.remote)
            return _error(provider, 403, "forbidden")
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):  # UnicodeDecodeError included; absurd nesting
            metrics.CALLBACKS.labels(provider, kind, "malformed").inc()
            return _error(provider, 400, "malformed JSON")
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
            metrics.CALLBACKS.labels(provider, kind, "malformed").inc()
            return _error(provider, 400, "expected a JSON array of objects")
        return body

    async def _queue(self, provider: str, phone: str, text: str, sent_at: str,
                     identity: str) -> bool:
        """Queue one uplink on its number's queue unless this push was queued before; True
        when queued. Raises RedisError when Redis is unavailable."""
        digest = hashlib.sha256(identity.encode(errors="surrogatepass")).hexdigest()[:32]
        job = {"text": text, "meta": {"sent_at": sent_at, "provider": provider}}
        queued = await self.dispatcher.enqueue(phone, job, once=f"{provider}:{digest}",
                                               once_ttl_seconds=DEDUPE_TTL)
        if queued:
            self._queued.add(phone)
        return queued

    async def drain(self, poll_seconds: float = 0.02) -> None:
        """Wait until every number this instance queued messages for has been answered, on
        whichever instance (tests)."""
        while self._queued:
            for phone in list(self._queued):
                if not await self.dispatcher.has_work(phone):
                    self._queued.discard(phone)
            if self._queued:
                await asyncio.sleep(poll_seconds)

    # -- uplink --------------------------------------------------------------------------------
    async def _uplink(self, provider: str, request: web.Request,
                      parse: Callable[[dict], tuple[Any, Any, str, str]]) -> web.Response:
        items = await self._items(provider, "up", request)
        if isinstance(items, web.Response):
            return items
        inbound = []
        for item in items:
            raw_phone, raw_text, sent_at, identity = parse(item)
            phone, text = normalise_phone(raw_phone), _text(raw_text)
            if phone is None or text is None:
                log.warning("sms %s uplink item skipped: no mainland number or no text", provider)
                metrics.CALLBACKS.labels(provider, "up", "malformed").inc()
                continue
            inbound.append((phone, text, sent_at, identity))
        inbound.sort(key=lambda m: m[2])
        for phone, text, sent_at, identity in inbound:
            try:
                first = await self._queue(provider, phone, text, sent_at,
                                          f"up:{phone}:{identity}")
            except STORE_ERRORS as exc:
                # Everything before this item is queued and marked; nothing from here is.
                metrics.CALLBACKS.labels(provider, "up", "error").inc()
                log.warning("sms %s uplink from %s not taken (Redis: %s); the provider will "
                            "push it again", provider, mask(phone), type(exc).__name__)
                return _error(provider, 503, "temporarily unavailable, please retry")
            if not first:
                log.info("sms %s uplink from %s is a duplicate push; ignored", provider, mask(phone))
                metrics.CALLBACKS.labels(provider, "up", "duplicate").inc()
                continue
            metrics.CALLBACKS.labels(provider, "up", "accepted").inc()
        return web.json_response(ACK[provider])

    async def aliyun_up(self, request: web.Request) -> web.Response:
        """Aliyun SmsUp batch push."""
        def parse(item: dict) -> tuple[Any, Any, str, str]:
            identity = str(item.get("sequence_id") or "") or \
                f"{item.get('send_time')}:{item.get('content')}"
            return (item.get("phone_number"), item.get("content"),
                    _provider_time(item.get("send_time")), identity)
        return await self._uplink("aliyun", request, parse)

    async def tencent_up(self, request: web.Request) -> web.Response:
        """Tencent 短信回复 callback."""
        def parse(item: dict) -> tuple[Any, Any, str, str]:
            if str(item.get("nationcode", "86")) != "86":
                return None, "", "", ""
            when = item.get("time")
            seconds = ascii_int(when, max_digits=11)
            try:
                sent_at = datetime.fromtimestamp(seconds, self._tz).strftime("%Y-%m-%d %H:%M:%S")
            except (TypeError, ValueError, OverflowError, OSError):  # None, or out of range
                sent_at = ""
            return item.get("mobile"), item.get("text"), sent_at, f"{when}:{item.get('text')}"
        return await self._uplink("tencent", request, parse)

    # -- delivery reports ----------------------------------------------------------------------
    async def _reports(self, provider: str, request: web.Request,
                       parse: Callable[[dict], DeliveryReport | None]) -> web.Response:
        items = await self._items(provider, "report", request)
        if isinstance(items, web.Response):
            return items
        reports = []
        for item in items:
            try:
                report = parse(item)
                if report is not None:  # id and code go to Redis: UTF-8 only, no lone surrogates
                    (report.provider_id + report.code + report.out_id).encode("utf-8")
            except (TypeError, ValueError, KeyError):  # UnicodeEncodeError is a ValueError
                report = None
            if report is None:
                log.warning("sms %s report item skipped: malformed", provider)
                metrics.CALLBACKS.labels(provider, "report", "malformed").inc()
                continue
            reports.append(report)
        for report in sorted(reports, key=lambda r: r.reported_at):
            try:
                outcome = await self.outbox.record_report(report, provider)
            except STORE_ERRORS as exc:  # reports apply idempotently: the retry redoes them all
                metrics.CALLBACKS.labels(provider, "report", "error").inc()
                log.warning("sms %s reports not recorded (Redis: %s); the provider will push "
                            "them again", provider, type(exc).__name__)
                return _error(provider, 503, "temporarily unavailable, please retry")
            metrics.CALLBACKS.labels(provider, "report",
                                     "duplicate" if outcome in ("duplicate", "stale")
                                     else "accepted").inc()
            log.info("sms %s report for %s: %s (%s)", provider, mask(report.phone), outcome,
                     report.code)
        return web.json_response(ACK[provider])

    async def aliyun_report(self, request: web.Request) -> web.Response:
        """Aliyun SmsReport batch push."""
        def parse(item: dict) -> DeliveryReport | None:
            phone = normalise_phone(item.get("phone_number"))
            reported_at = _provider_time(item.get("report_time"))
            if phone is None or not item.get("biz_id") or not reported_at \
                    or not isinstance(item.get("success"), bool):
                return None
            return DeliveryReport(str(item["biz_id"]), phone, item["success"],
                                  str(item.get("err_code", "")), reported_at,
                                  str(item.get("out_id") or ""))
        return await self._reports("aliyun", request, parse)

    async def tencent_report(self, request: web.Request) -> web.Response:
        """Tencent 短信回执 callback."""
        def parse(item: dict) -> DeliveryReport | None:
            phone = normalise_phone(item.get("mobile"))
            status = item.get("report_status")
            reported_at = _provider_time(item.get("user_receive_time"))
            if phone is None or not item.get("sid") or status not in ("SUCCESS", "FAIL") \
                    or not reported_at:
                return None
            return DeliveryReport(str(item["sid"]), phone, status == "SUCCESS",
                                  str(item.get("errmsg", "")), reported_at)
        return await self._reports("tencent", request, parse)
