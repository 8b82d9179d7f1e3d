"""Loopback fake of Tencent Cloud SMS (SendSms, API 2021-01-11) and of its callbacks.

``FakeTencentSms`` verifies TC3-HMAC-SHA256 the way Tencent's API gateway does — recomputed here
independently of the product's signer, from the headers actually received — plus the SecretId,
timestamp skew, action/version headers, SmsSdkAppId, sign name and templates. It answers with
Tencent's real shapes: ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`` for a
rejected request and ``{"Response": {"SendStatusSet": [...], "RequestId"}}`` with a per-number
``Code`` (``Ok``, ``LimitExceeded.PhoneNumberThirtySecondLimit`` …). Tests can queue codes
(``POST /_fake/fail`` ``{"code", "times", "per_number"}`` from another process).

``PullSmsSendStatusByPhoneNumber`` (same signature checks) lists, like Tencent, only messages
whose status report is in: an accepted message is reported ``report_delay_seconds`` after it
was accepted (by ``clock``; None: never), with the ``SessionContext`` it was sent with.

With ``report_url`` set (the gateway's ``/sms/tencent/report?token=…``), the fake pushes the
短信回执 of what it accepted, on :meth:`FakeTencentSms.push_reports` or at once
(``auto_report``).

``report_items`` / ``reply_item`` build the bodies Tencent posts to the 短信回执 (status report,
a JSON array) and 短信回复 (reply, one JSON object) callback URLs.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from fakes.aliyun_sms import Hold

MOBILE = re.compile(r"\+861[3-9]\d{9}")
AUTH = re.compile(r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/([a-z]+)/tc3_request, "
                  r"SignedHeaders=([a-z;\-]+), Signature=([0-9a-f]{64})")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_signature(secret_key: str, date: str, service: str, timestamp: str,
                       request: web.Request, signed_headers: str, body: bytes) -> str:
    """Tencent's documented v3 algorithm, independent of channels.sms.providers.tencent."""
    headers = "".join(f"{name}:{request.headers.get(name, '').strip().lower()}\n"
                      for name in signed_headers.split(";"))
    canonical = "\n".join(["POST", "/", "", headers, signed_headers, _sha(body)])
    to_sign = "\n".join(["TC3-HMAC-SHA256", timestamp, f"{date}/{service}/tc3_request",
                         _sha(canonical.encode())])
    key = ("TC3" + secret_key).encode()
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class FakeTencentSms:
    """A loopback sms.tencentcloudapi.com with known keys, app id, sign name and templates."""

    def __init__(self, secret_id: str = "AKID-test-id", secret_key: str = "test-key",
                 sdk_app_id: str = "1400000001", sign_names: tuple[str, ...] = ("国网供电",),
                 templates: dict[str, int] | None = None, max_param_length: int = 35,
                 clock: Callable[[], float] = time.time,
                 report_delay_seconds: float | None = 0.0) -> None:
        self.clock = clock
        self.report_delay_seconds = report_delay_seconds
        self.pulls: list[dict[str, Any]] = []
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.sign_names = set(sign_names)
        self.templates = templates or {}   # template id -> number of variables
        self.max_param_length = max_param_length
        self.sent: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self._request_errors: deque[str] = deque()
        self._number_codes: deque[str] = deque()
        self.next_serials: deque[str] = deque()  # tests may fix the SerialNo of the next sends
        self.calls = 0
        self.abandoned: list[bytes] = []  # held calls dropped because the client left
        self._holds: deque[Hold] = deque()
        self._server: TestServer | None = None
        # Status-report pushes to the gateway (push_reports / auto_report).
        self.report_url = ""
        self.auto_report = False
        self._unreported: list[dict[str, Any]] = []
        self._report_tasks: set[asyncio.Task] = set()

    def hold_next(self, accept_if_abandoned: bool = False) -> Hold:
        """Keep the next call waiting until the test releases it (a slow provider); a call
        whose client left meanwhile is dropped unless ``accept_if_abandoned``."""
        hold = Hold(accept_if_abandoned)
        self._holds.append(hold)
        return hold

    def fail_next(self, code: str, times: int = 1) -> None:
        """Reject the next ``times`` requests as a whole with ``code`` (Response.Error)."""
        self._request_errors.extend([code] * times)

    def number_code_next(self, code: str, times: int = 1) -> None:
        """Answer the next ``times`` numbers with ``code`` in SendStatusSet."""
        self._number_codes.extend([code] * times)

    def throttle_next(self, times: int = 1) -> None:
        """Per-number 30-second flow control for the next numbers."""
        self.number_code_next("LimitExceeded.PhoneNumberThirtySecondLimit", times)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self._handle)
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

    async def push_reports(self, ok: bool = True, code: str = "DELIVRD") -> list[int]:
        """Push the status reports of every message accepted since the last push to
        ``report_url`` (the gateway's callback, token included), one JSON array per push, as
        the provider does; returns the HTTP statuses answered."""
        pending, self._unreported = self._unreported, []
        if not pending or not self.report_url:
            return []
        for sent in pending:
            sent["report_ok"] = ok
        async with aiohttp.ClientSession() as session:
            async with session.post(self.report_url,
                                    json=report_items(pending, ok=ok, errmsg=code)) as response:
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
        queue = self.number_code_next if body.get("per_number") else self.fail_next
        queue(str(body["code"]), int(body.get("times", 1)))
        return web.json_response({"ok": True})

    def _error(self, code: str, message: str) -> web.Response:
        self.rejected.append(code)
        return web.json_response({"Response": {"Error": {"Code": code, "Message": message},
                                               "RequestId": str(uuid.uuid4())}})

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.read()
        if self._holds:
            # Run apart from this handler, which aiohttp cancels when the client goes away.
            held = asyncio.ensure_future(self._held(request, body, self._holds.popleft()))
            return await asyncio.shield(held)
        return await self._answer(request, body)

    async def _held(self, request: web.Request, body: bytes, hold: Hold) -> web.Response:
        try:
            hold.arrived.set()
            await hold.released.wait()
            if request.transport is None and not hold.accept_if_abandoned:
                self.abandoned.append(body)
                return web.Response(status=503)
            return await self._answer(request, body)
        finally:
            hold.done.set()

    async def _answer(self, request: web.Request, body: bytes) -> web.Response:
        match = AUTH.fullmatch(request.headers.get("Authorization", ""))
        if not match:
            return self._error("AuthFailure.InvalidAuthorization",
                               "Authorization header format error.")
        secret_id, date, service, signed_headers, signature = match.groups()
        if secret_id != self.secret_id:
            return self._error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        timestamp = request.headers.get("X-TC-Timestamp", "")
        if not timestamp.isdigit() or abs(int(timestamp) - time.time()) > 300:
            return self._error("AuthFailure.SignatureExpire", "Signature expired.")
        if datetime.fromtimestamp(int(timestamp), timezone.utc).strftime("%Y-%m-%d") != date \
                or service != "sms" or "host" not in signed_headers.split(";"):
            return self._error("AuthFailure.SignatureFailure", "Credential scope mismatch.")
        expected = expected_signature(self.secret_key, date, service, timestamp, request,
                                      signed_headers, body)
        if not hmac.compare_digest(expected, signature):
            return self._error("AuthFailure.SignatureFailure",
                               "The provided credentials could not be validated.")
        action = request.headers.get("X-TC-Action")
        if action not in ("SendSms", "PullSmsSendStatusByPhoneNumber") \
                or request.headers.get("X-TC-Version") != "2021-01-11":
            return self._error("InvalidAction", "The action or version is invalid.")
        if action == "PullSmsSendStatusByPhoneNumber":
            return self._pull(body)
        if self._request_errors:
            code = self._request_errors.popleft()
            return self._error(code, f"fake failure {code}")
        try:
            params = json.loads(body)
            phones = list(params["PhoneNumberSet"])
            template = str(params["TemplateId"])
            values = [str(v) for v in params.get("TemplateParamSet") or []]
        except (ValueError, KeyError, TypeError):
            return self._error("FailedOperation.JsonParseFail", "JSON parse failed.")
        if str(params.get("SmsSdkAppId")) != self.sdk_app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verify failed.")
        if params.get("SignName") not in self.sign_names:
            return self._error("FailedOperation.SignatureIncorrectOrUnapproved", "Signature incorrect or unapproved.")
        if template not in self.templates:
            return self._error("FailedOperation.TemplateIncorrectOrUnapproved", "Template incorrect or unapproved.")
        if len(values) != self.templates[template]:
            return self._error("FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                               "TemplateParamSet does not match the approved template.")
        if any(len(v) > self.max_param_length for v in values):
            return self._error("InvalidParameterValue.TemplateParameterLengthLimit",
                               "A template parameter exceeds the length limit.")
        statuses = []
        for phone in phones:
            serial = self.next_serials.popleft() if self.next_serials \
                else f"2433:{uuid.uuid4().int % 10**30}"
            if self._number_codes:
                code = self._number_codes.popleft()
            elif not MOBILE.fullmatch(str(phone)):
                code = "InvalidParameterValue.IncorrectPhoneNumber"
            else:
                code = "Ok"
            statuses.append({"SerialNo": serial if code == "Ok" else "", "PhoneNumber": phone,
                             "Fee": 1 if code == "Ok" else 0,
                             "SessionContext": params.get("SessionContext", ""),
                             "Code": code, "Message": "send success" if code == "Ok" else code,
                             "IsoCode": "CN"})
            if code == "Ok":
                self.sent.append({"phone": str(phone)[-11:], "template": template,
                                  "params": values, "serial": serial,
                                  "sign_name": params["SignName"], "sent_at": self.clock(),
                                  "session_context": str(params.get("SessionContext") or ""),
                                  "report_ok": True})
                self._accepted(self.sent[-1])
            else:
                self.rejected.append(code)
        return web.json_response({"Response": {"SendStatusSet": statuses,
                                               "RequestId": str(uuid.uuid4())}})


    def _pull(self, body: bytes) -> web.Response:
        """PullSmsSendStatusByPhoneNumber: reported messages to one number in a time range."""
        try:
            params = json.loads(body)
            begin, limit = params["BeginTime"], params["Limit"]
            phone, end = str(params["PhoneNumber"]), params.get("EndTime")
            offset = params["Offset"]
        except (ValueError, KeyError, TypeError):
            return self._error("MissingParameter", "BeginTime, Offset, Limit, PhoneNumber.")
        self.pulls.append(params)
        if str(params.get("SmsSdkAppId")) != self.sdk_app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verify failed.")
        if not all(isinstance(v, int) for v in (begin, limit, offset)) or offset != 0 \
                or not 1 <= limit <= 100 or (end is not None and not isinstance(end, int)):
            return self._error("InvalidParameterValue", "BeginTime/Offset/Limit/EndTime invalid.")
        if not MOBILE.fullmatch(phone):
            return self._error("InvalidParameterValue.IncorrectPhoneNumber", "Incorrect phone number.")
        if self.report_delay_seconds is None:
            return web.json_response({"Response": {"PullSmsSendStatusSet": [],
                                                   "RequestId": str(uuid.uuid4())}})
        now = self.clock()
        items = []
        for sent in self.sent:
            reported = sent["sent_at"] + self.report_delay_seconds
            if f"+86{sent['phone']}" != phone or reported > now or reported < begin \
                    or (end is not None and reported > end):
                continue
            items.append({"UserReceiveTime": int(reported), "CountryCode": "86",
                          "SubscriberNumber": sent["phone"], "PhoneNumber": phone,
                          "SerialNo": sent["serial"],
                          "ReportStatus": "SUCCESS" if sent["report_ok"] else "FAIL",
                          "Description": "DELIVRD" if sent["report_ok"] else "UNDELIV",
                          "SessionContext": sent["session_context"]})
        return web.json_response({"Response": {"PullSmsSendStatusSet": items[:limit],
                                               "RequestId": str(uuid.uuid4())}})


def report_items(sent: list[dict[str, Any]], ok: bool = True, errmsg: str = "DELIVRD",
                 receive_time: str | None = None) -> list[dict[str, Any]]:
    """短信回执 callback items for messages the fake accepted."""
    when = receive_time or datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return [{"user_receive_time": when, "nationcode": "86", "mobile": s["phone"],
             "report_status": "SUCCESS" if ok else "FAIL", "errmsg": errmsg,
             "description": "用户短信送达成功" if ok else "用户短信接收失败", "sid": s["serial"]}
            for s in sent]


def reply_item(phone: str, text: str, when: int | None = None,
               sign: str = "国网供电") -> dict[str, Any]:
    """A 短信回复 callback body (the customer's SMS to us)."""
    return {"extend": "", "mobile": phone, "nationcode": "86", "sign": sign, "text": text,
            "time": int(time.time()) if when is None else when}
