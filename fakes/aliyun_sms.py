"""Loopback fake of Aliyun SMS (dysmsapi 2017-05-25: SendSms, SendBatchSms, QuerySendDetails)
and of its pushes.

``FakeAliyunSms`` verifies every request the way Aliyun does — RPC signature v1 (HMAC-SHA1)
recomputed here independently of the product's signer, AccessKeyId, timestamp skew, nonce
replay — and answers with Aliyun's real shapes: HTTP 200 ``{"Code": "OK", "BizId", "RequestId",
"Message"}``, business errors as HTTP 200 with another Code (``isv.BUSINESS_LIMIT_CONTROL``,
``isv.MOBILE_NUMBER_ILLEGAL`` …), request errors as HTTP 4xx (``SignatureDoesNotMatch`` …).
Tests can queue codes for the next calls (throttle, fail), hold a call until they release it
(a slow provider) and read what was "delivered". ``QuerySendDetails`` (same signature checks)
lists the messages accepted for a number on a China date (``SendStatus`` 1 waiting for the
report, 2 failed, 3 delivered; set an entry's ``status`` to change it), with their ``OutId``;
``clock`` (default ``time.time``) dates what is accepted. ``POST /_fake/fail`` with
``{"code": …, "times": N}`` queues failures from another process (a benchmark).

With ``report_url`` set (the gateway's ``/sms/aliyun/report?token=…``), the fake pushes the
SmsReport of what it accepted, on :meth:`FakeAliyunSms.push_reports` or at once
(``auto_report``).

``report_items`` / ``up_items`` build the JSON arrays Aliyun's HTTP batch push (消息推送) posts to
the SmsReport and SmsUp receiving URLs.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

MESSAGES = {
    "isv.BUSINESS_LIMIT_CONTROL": "触发分钟级流控Permits:1",
    "isv.DAY_LIMIT_CONTROL": "触发日发送限额",
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号",
    "isv.SMS_TEMPLATE_ILLEGAL": "模板不合法(不存在或被拉黑)",
    "isv.SMS_SIGNATURE_ILLEGAL": "签名不合法(不存在或被拉黑)",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板缺少变量",
    "isv.PARAM_LENGTH_LIMIT": "参数超出长度限制",
    "isv.AMOUNT_NOT_ENOUGH": "账户余额不足",
    "isp.SYSTEM_ERROR": "系统错误",
    "Throttling.User": "Request was denied due to user flow control.",
}
MOBILE = re.compile(r"1[3-9]\d{9}")
CHINA = ZoneInfo("Asia/Shanghai")
SEND_ACTIONS = ("SendSms", "SendBatchSms")


def _enc(value: str) -> str:
    # Written separately from the product's encoder on purpose: Java URLEncoder style, then the
    # three replacements Aliyun's documentation prescribes.
    return quote(value, safe="~").replace("+", "%20").replace("*", "%2A").replace("%7E", "~") \
        .replace("/", "%2F")


def expected_signature(secret: str, method: str, params: dict[str, str]) -> str:
    """Aliyun's documented algorithm, independent of channels.sms.providers.aliyun."""
    query = "&".join(f"{_enc(k)}={_enc(params[k])}" for k in sorted(params) if k != "Signature")
    to_sign = method + "&" + _enc("/") + "&" + _enc(query)
    return base64.b64encode(
        hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


@dataclass
class Hold:
    """One held send call: ``arrived`` is set when it is in, ``release()`` lets it go on,
    ``done`` is set once it is answered. A call whose client went away meanwhile is dropped
    (never delivered) unless ``accept_if_abandoned`` (the provider accepted it, but the client
    never read the answer)."""

    accept_if_abandoned: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


class FakeAliyunSms:
    """A loopback dysmsapi endpoint with known keys, a sign name and approved templates."""

    def __init__(self, access_key_id: str = "LTAI-test-id", access_key_secret: str = "test-secret",
                 sign_names: tuple[str, ...] = ("国网供电",),
                 templates: dict[str, tuple[str, ...]] | None = None,
                 max_param_length: int = 35, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.queries: list[dict[str, str]] = []
        self._query_failures: deque[str] = deque()
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.sign_names = set(sign_names)
        self.templates = templates or {}
        self.max_param_length = max_param_length
        self.sent: list[dict[str, Any]] = []
        self.requests: list[dict[str, str]] = []
        self.rejected: list[tuple[int, str]] = []
        self._queued: deque[tuple[int, str]] = deque()
        self._nonces: set[str] = set()
        self.next_biz_ids: deque[str] = deque()  # tests may fix the BizId of the next sends
        self.abandoned: list[dict[str, str]] = []  # held calls dropped because the client left
        self._holds: deque[Hold] = deque()
        self._server: TestServer | None = None
        # Status-report pushes to the gateway (push_reports / auto_report).
        self.report_url = ""
        self.auto_report = False
        self._unreported: list[dict[str, Any]] = []
        self._report_tasks: set[asyncio.Task] = set()

    # -- test controls -------------------------------------------------------------------------
    def fail_next(self, code: str, times: int = 1, http_status: int = 200) -> None:
        """Answer the next ``times`` sends with ``code`` (after verifying the signature)."""
        self._queued.extend([(http_status, code)] * times)

    def fail_queries_next(self, code: str, times: int = 1) -> None:
        """Answer the next ``times`` QuerySendDetails calls with ``code`` (HTTP 200)."""
        self._query_failures.extend([code] * times)

    def throttle_next(self, times: int = 1) -> None:
        """Answer the next sends with Aliyun's per-number flow control."""
        self.fail_next("isv.BUSINESS_LIMIT_CONTROL", times)

    def hold_next(self, accept_if_abandoned: bool = False) -> Hold:
        """Keep the next call waiting until the test releases it (a slow provider)."""
        hold = Hold(accept_if_abandoned)
        self._holds.append(hold)
        return hold

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> str:
        """Start on a free loopback port; returns the endpoint URL."""
        app = web.Application()
        app.router.add_route("*", "/", self._handle)
        app.router.add_post("/_fake/fail", self._control_fail)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}"

    async def close(self) -> None:
        if self._report_tasks:
            await asyncio.gather(*self._report_tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.close()

    async def push_reports(self, ok: bool = True, code: str = "DELIVERED") -> list[int]:
        """Push the status reports of every message accepted since the last push to
        ``report_url`` (the gateway's callback, token included), one JSON array per push, as
        the provider does; returns the HTTP statuses answered."""
        pending, self._unreported = self._unreported, []
        if not pending or not self.report_url:
            return []
        for sent in pending:
            sent["status"], sent["err_code"] = (3 if ok else 2), code
            sent["receive_date"] = datetime.fromtimestamp(self.clock(), CHINA).strftime(
                "%Y-%m-%d %H:%M:%S")
        async with aiohttp.ClientSession() as session:
            async with session.post(self.report_url,
                                    json=report_items(pending, success=ok, err_code=code)) as response:
                return [response.status]

    def _accepted(self, sent: dict[str, Any]) -> None:
        if not self.report_url:
            return
        self._unreported.append(sent)
        if self.auto_report:
            task = asyncio.create_task(self.push_reports())
            self._report_tasks.add(task)
            task.add_done_callback(self._report_tasks.discard)

    async def _control_fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_next(str(body["code"]), int(body.get("times", 1)))
        return web.json_response({"queued": len(self._queued)})

    # -- protocol ------------------------------------------------------------------------------
    def _error(self, status: int, code: str, message: str) -> web.Response:
        self.rejected.append((status, code))
        return web.json_response({"RequestId": str(uuid.uuid4()).upper(), "HostId":
                                  "dysmsapi.aliyuncs.com", "Code": code, "Message": message},
                                 status=status)

    def _business(self, code: str) -> web.Response:
        self.rejected.append((200, code))
        return web.json_response({"RequestId": str(uuid.uuid4()).upper(), "Code": code,
                                  "Message": MESSAGES.get(code, code)})

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            params = {k: v for k, v in (await request.post()).items()}
        else:
            params = dict(request.query)
        if self._holds:
            # Run apart from this handler, which aiohttp cancels when the client goes away.
            held = asyncio.ensure_future(self._held(request, params, self._holds.popleft()))
            return await asyncio.shield(held)
        return await self._answer(request, params)

    async def _held(self, request: web.Request, params: dict[str, str], hold: Hold) -> web.Response:
        try:
            hold.arrived.set()
            await hold.released.wait()
            if request.transport is None and not hold.accept_if_abandoned:
                self.abandoned.append(params)
                return web.Response(status=503)
            return await self._answer(request, params)
        finally:
            hold.done.set()

    async def _answer(self, request: web.Request, params: dict[str, str]) -> web.Response:
        self.requests.append(params)
        for name in ("AccessKeyId", "Action", "SignatureMethod", "SignatureNonce",
                     "SignatureVersion", "Timestamp", "Version", "Signature"):
            if not params.get(name):
                return self._error(400, "MissingParameter", f"{name} is mandatory.")
        if params["AccessKeyId"] != self.access_key_id:
            return self._error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            return self._error(400, "InvalidSignatureMethod", "Specified signature method is not supported.")
        try:
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return self._error(400, "InvalidTimeStamp.Format", "Specified time stamp is not valid.")
        if abs(stamp.replace(tzinfo=timezone.utc).timestamp() - time.time()) > 900:
            return self._error(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        expected = expected_signature(self.access_key_secret, request.method, params)
        if not hmac.compare_digest(expected, params["Signature"]):
            return self._error(400, "SignatureDoesNotMatch",
                               "Specified signature is not matched with our calculation.")
        if params["SignatureNonce"] in self._nonces:
            return self._error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces.add(params["SignatureNonce"])
        if params["Version"] != "2017-05-25" or params["Action"] not in (*SEND_ACTIONS,
                                                                         "QuerySendDetails"):
            return self._error(400, "InvalidAction.NotFound", "Specified api is not found.")
        if params["Action"] == "QuerySendDetails":
            return self._query(params)
        if self._queued:
            status, code = self._queued.popleft()
            if status != 200:
                return self._error(status, code, MESSAGES.get(code, code))
            return self._business(code)
        try:
            if params["Action"] == "SendSms":
                phones = params["PhoneNumbers"].split(",")
                signs = [params["SignName"]] * len(phones)
                values = [json.loads(params.get("TemplateParam") or "{}")] * len(phones)
            else:
                phones = json.loads(params["PhoneNumberJson"])
                signs = json.loads(params["SignNameJson"])
                values = json.loads(params.get("TemplateParamJson") or "[]")
        except (KeyError, ValueError):
            return self._error(400, "MissingParameter", "PhoneNumbers/TemplateParam malformed.")
        template = params.get("TemplateCode", "")
        if template not in self.templates:
            return self._business("isv.SMS_TEMPLATE_ILLEGAL")
        if len(signs) != len(phones) or len(values) != len(phones):
            return self._business("isv.INVALID_JSON_PARAM")
        if any(sign not in self.sign_names for sign in signs):
            return self._business("isv.SMS_SIGNATURE_ILLEGAL")
        if any(not MOBILE.fullmatch(p) for p in phones):
            return self._business("isv.MOBILE_NUMBER_ILLEGAL")
        for value in values:
            if any(name not in value for name in self.templates[template]):
                return self._business("isv.TEMPLATE_MISSING_PARAMETERS")
            if any(len(str(v)) > self.max_param_length for v in value.values()):
                return self._business("isv.PARAM_LENGTH_LIMIT")
        biz_id = self.next_biz_ids.popleft() if self.next_biz_ids \
            else f"{int(time.time() * 1000) % 10**12}^{len(self.sent)}"
        for phone, sign, value in zip(phones, signs, values):
            self.sent.append({"phone": phone, "sign_name": sign, "template": template,
                              "params": value, "biz_id": biz_id,
                              "out_id": params.get("OutId", ""), "action": params["Action"],
                              "send_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                              "sent_at": self.clock(), "status": 1, "err_code": "",
                              "receive_date": ""})
            self._accepted(self.sent[-1])
        return web.json_response({"Message": "OK", "RequestId": str(uuid.uuid4()).upper(),
                                  "BizId": biz_id, "Code": "OK"})


    def _query(self, params: dict[str, str]) -> web.Response:
        """QuerySendDetails: the messages to one number on one date, a page at a time."""
        self.queries.append(params)
        for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
            if not params.get(name):
                return self._error(400, "MissingParameter", f"{name} is mandatory.")
        if self._query_failures:
            return self._business(self._query_failures.popleft())
        if not MOBILE.fullmatch(params["PhoneNumber"]):
            return self._business("isv.MOBILE_NUMBER_ILLEGAL")
        if not re.fullmatch(r"\d{8}", params["SendDate"]) \
                or not params["PageSize"].isdigit() or not 1 <= int(params["PageSize"]) <= 50 \
                or not params["CurrentPage"].isdigit() or int(params["CurrentPage"]) < 1:
            return self._business("isv.INVALID_PARAMETERS")
        matching = [s for s in self.sent if s["phone"] == params["PhoneNumber"] and
                    datetime.fromtimestamp(s["sent_at"], CHINA).strftime("%Y%m%d")
                    == params["SendDate"]]
        size, page = int(params["PageSize"]), int(params["CurrentPage"])
        items = [{"PhoneNum": s["phone"], "SendStatus": s["status"], "ErrCode": s["err_code"],
                  "TemplateCode": s["template"], "Content": json.dumps(s["params"],
                                                                        ensure_ascii=False),
                  "SendDate": datetime.fromtimestamp(s["sent_at"], CHINA)
                  .strftime("%Y-%m-%d %H:%M:%S"),
                  "ReceiveDate": s["receive_date"], "OutId": s["out_id"]}
                 for s in matching[(page - 1) * size:page * size]]
        return web.json_response({"TotalCount": len(matching), "Message": "OK",
                                  "RequestId": str(uuid.uuid4()).upper(), "Code": "OK",
                                  "SmsSendDetailDTOs": {"SmsSendDetailDTO": items}})


def report_items(sent: list[dict[str, Any]], success: bool = True, err_code: str = "DELIVERED",
                 err_msg: str = "用户接收成功", report_time: str | None = None) -> list[dict]:
    """SmsReport items (HTTP batch push) for messages the fake accepted."""
    now = report_time or datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return [{"phone_number": s["phone"], "send_time": s["send_time"], "report_time": now,
             "success": success, "err_code": err_code, "err_msg": err_msg, "sms_size": "1",
             "biz_id": s["biz_id"], "out_id": s["out_id"]} for s in sent]


def up_item(phone: str, content: str, sequence_id: int, sign_name: str = "国网供电",
            send_time: str | None = None) -> dict[str, Any]:
    """One SmsUp item (a customer's reply) as Aliyun pushes it."""
    return {"phone_number": phone,
            "send_time": send_time or datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "content": content, "sign_name": sign_name, "dest_code": "1234",
            "sequence_id": sequence_id}
