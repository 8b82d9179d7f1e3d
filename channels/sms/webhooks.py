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
set, come from one of those addresses. Provider pushes are retried and may repeat or arrive out
of order: uplinks are de-duplicated in Redis, reports are applied idempotently by time.
The uplink is acknowledged at once and the conversation runs in the background (a provider
waits a few seconds at most, the assistant may take longer).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from channels.sms import metrics
from channels.sms.config import SmsConfig
from channels.sms.outbox import DeliveryReport, Outbox
from channels.sms.phones import mask, normalise_phone

log = logging.getLogger("channels.sms.webhooks")

DEDUPE_TTL = 2 * 86400
ACK = {"aliyun": {"code": 0, "msg": "成功"}, "tencent": {"result": 0, "errmsg": "OK"}}


def _error(provider: str, status: int, message: str) -> web.Response:
    body = {"code": 1, "msg": message} if provider == "aliyun" else {"result": 1, "errmsg": message}
    return web.json_response(body, status=status)


class SmsWebhooks:
    """The four callback handlers of one gateway instance."""

    def __init__(self, config: SmsConfig, redis, outbox: Outbox,
                 on_message: Callable[[str, str, dict[str, Any]], Awaitable[None]]) -> None:
        self.config = config
        self.redis = redis
        self.outbox = outbox
        self.on_message = on_message
        self.tasks: set[asyncio.Task] = set()
        self._tails: dict[str, asyncio.Task] = {}
        self._tz = ZoneInfo(config.timezone)

    # -- shared checks -------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        token = self.config.callback_token
        given = request.query.get("token", "")
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return False
        if self.config.callback_allowed_ips:
            try:
                ip = ipaddress.ip_address(request.remote or "")
            except ValueError:
                return False
            return any(ip in net for net in self.config.callback_allowed_ips)
        return True

    async def _items(self, provider: str, kind: str,
                     request: web.Request) -> list[dict] | web.Response:
        if not self._authorised(request):
            metrics.CALLBACKS.labels(provider, kind, "forged").inc()
            log.warning("sms %s callback refused from %s: bad token or address", provider,
                        request.remote)
            return _error(provider, 403, "forbidden")
        try:
            body = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            metrics.CALLBACKS.labels(provider, kind, "malformed").inc()
            return _error(provider, 400, "malformed JSON")
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
            metrics.CALLBACKS.labels(provider, kind, "malformed").inc()
            return _error(provider, 400, "expected a JSON array of objects")
        return body

    async def _first_time(self, provider: str, identity: str) -> bool:
        digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
        return bool(await self.redis.set(f"pd:sms:seen:{provider}:{digest}", "1", nx=True,
                                         ex=DEDUPE_TTL))

    def _spawn(self, inbound: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Handle the messages in the background, in order per number: a number's messages
        wait for its earlier ones still running on this instance (the router's Redis lock then
        serialises the turns across instances)."""
        by_phone: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        for item in inbound:
            by_phone.setdefault(item[0], []).append(item)
        for phone, items in by_phone.items():
            previous = self._tails.get(phone)

            async def run(items=items, previous=previous) -> None:
                if previous is not None:
                    await asyncio.gather(previous, return_exceptions=True)
                for number, text, meta in items:
                    try:
                        await self.on_message(number, text, meta)
                    except Exception:  # noqa: BLE001 - one message must not stop the others
                        log.exception("sms inbound from %s failed", mask(number))

            task = asyncio.create_task(run())
            self._tails[phone] = task
            self.tasks.add(task)
            task.add_done_callback(lambda t, phone=phone: self._done(phone, t))

    def _done(self, phone: str, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if self._tails.get(phone) is task:
            del self._tails[phone]

    async def drain(self) -> None:
        """Wait for the background conversations (shutdown, tests)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    # -- uplink --------------------------------------------------------------------------------
    async def _uplink(self, provider: str, request: web.Request,
                      parse: Callable[[dict], tuple[str | None, str, str, str]]) -> web.Response:
        items = await self._items(provider, "up", request)
        if isinstance(items, web.Response):
            return items
        inbound = []
        for item in items:
            raw_phone, text, sent_at, identity = parse(item)
            phone = normalise_phone(raw_phone)
            if phone is None or not isinstance(text, str):
                log.warning("sms %s uplink item skipped: no mainland number or no text", provider)
                continue
            if not await self._first_time(provider, f"up:{phone}:{identity}"):
                log.info("sms %s uplink from %s is a duplicate push; ignored", provider, mask(phone))
                metrics.CALLBACKS.labels(provider, "up", "duplicate").inc()
                continue
            metrics.CALLBACKS.labels(provider, "up", "accepted").inc()
            inbound.append((phone, text, {"sent_at": sent_at, "provider": provider}))
        inbound.sort(key=lambda m: m[2]["sent_at"])
        if inbound:
            self._spawn(inbound)
        return web.json_response(ACK[provider])

    async def aliyun_up(self, request: web.Request) -> web.Response:
        """Aliyun SmsUp batch push."""
        def parse(item: dict) -> tuple[str | None, str, str, str]:
            identity = str(item.get("sequence_id") or "") or \
                f"{item.get('send_time')}:{item.get('content')}"
            return item.get("phone_number"), item.get("content"), str(item.get("send_time", "")), identity
        return await self._uplink("aliyun", request, parse)

    async def tencent_up(self, request: web.Request) -> web.Response:
        """Tencent 短信回复 callback."""
        def parse(item: dict) -> tuple[str | None, str, str, str]:
            if str(item.get("nationcode", "86")) != "86":
                return None, "", "", ""
            when = item.get("time")
            try:
                sent_at = datetime.fromtimestamp(int(when), self._tz).strftime("%Y-%m-%d %H:%M:%S")
            except (TypeError, ValueError, OverflowError):
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
            except (TypeError, ValueError, KeyError):
                report = None
            if report is None:
                log.warning("sms %s report item skipped: malformed", provider)
                continue
            reports.append(report)
        for report in sorted(reports, key=lambda r: r.reported_at):
            outcome = await self.outbox.record_report(report, provider)
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
            if phone is None or not item.get("biz_id") or not isinstance(item.get("success"), bool):
                return None
            return DeliveryReport(str(item["biz_id"]), phone, item["success"],
                                  str(item.get("err_code", "")), str(item.get("report_time", "")))
        return await self._reports("aliyun", request, parse)

    async def tencent_report(self, request: web.Request) -> web.Response:
        """Tencent 短信回执 callback."""
        def parse(item: dict) -> DeliveryReport | None:
            phone = normalise_phone(item.get("mobile"))
            status = item.get("report_status")
            if phone is None or not item.get("sid") or status not in ("SUCCESS", "FAIL"):
                return None
            return DeliveryReport(str(item["sid"]), phone, status == "SUCCESS",
                                  str(item.get("errmsg", "")), str(item.get("user_receive_time", "")))
        return await self._reports("tencent", request, parse)
