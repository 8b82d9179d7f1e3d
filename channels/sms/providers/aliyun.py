"""Aliyun SMS (dysmsapi, API version 2017-05-25): SendSms / SendBatchSms with RPC signature v1.

SendBatchSms sends one template to up to 100 numbers, each with its own parameters, in one
call; its ``OutId`` (one per call) is sent when every request of the batch carries the same
reference, and QuerySendDetails lists it with each number.

Signature (Aliyun "RPC 签名机制", SignatureMethod=HMAC-SHA1, SignatureVersion=1.0):
the parameters except ``Signature`` sorted by name, each name and value percent-encoded per
RFC 3986 (unreserved ``A-Za-z0-9-_.~`` kept, space → ``%20``), joined ``k=v&…``; then
``StringToSign = METHOD + "&" + enc("/") + "&" + enc(canonical query)`` and
``Signature = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.

Business errors come back as HTTP 200 with ``Code != "OK"``; request errors (signature, key) as
HTTP 4xx with the same ``{RequestId, Code, Message}`` shape.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from channels.sms.providers.base import (
    Outcome, ProviderResponseError, SendResult, SentRecord, SmsRequest, SmsSender,
)

API_VERSION = "2017-05-25"
CHINA = ZoneInfo("Asia/Shanghai")  # QuerySendDetails' SendDate is a date in China
QUERY_PAGE_SIZE = 50               # the most QuerySendDetails returns per page
QUERY_MAX_PAGES = 20
# QuerySendDetails' SendStatus: 1 waiting for the report, 2 failed, 3 delivered.
SEND_STATUS = {"1": "pending", "2": "undelivered", "3": "delivered"}

# Flow control: the same message later. Values: seconds to wait when the code implies it.
THROTTLE_CODES = {
    "isv.BUSINESS_LIMIT_CONTROL": 60.0,   # per-number minute/hour/day flow control
    "isv.DAY_LIMIT_CONTROL": 3600.0,
    "isv.MONTH_LIMIT_CONTROL": 86400.0,
    "Throttling": 5.0,
    "Throttling.User": 5.0,
    "Throttling.Api": 5.0,
}
RETRY_CODES = {"isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR", "ServiceUnavailable", "InternalError",
               "isp.RAM_PERMISSION_DENY_TEMPORARY", "SignatureNonceUsed"}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's signature specifies (``~`` kept, space as ``%20``)."""
    return quote(str(value), safe="-_.~")


def canonical_query(params: dict[str, str]) -> str:
    """The sorted, encoded ``k=v&…`` string of ``params`` (``Signature`` excluded)."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                    for k, v in sorted(params.items()) if k != "Signature")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    """``METHOD&%2F&enc(canonical query)``."""
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def rpc_signature(access_key_secret: str, method: str, params: dict[str, str]) -> str:
    """Base64(HMAC-SHA1(secret + "&", StringToSign))."""
    digest = hmac.new(f"{access_key_secret}&".encode(), string_to_sign(method, params).encode(),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSmsSender(SmsSender):
    """SendSms for one number, SendBatchSms for up to 100 numbers of one template."""

    name: ClassVar[str] = "aliyun"
    max_batch: ClassVar[int] = 100
    lookup_is_conclusive: ClassVar[bool] = True  # QuerySendDetails lists a message once accepted

    def __init__(self, access_key_id: str, access_key_secret: str, endpoint: str,
                 sign_name: str, timeout_s: float = 5.0, region_id: str = "cn-hangzhou") -> None:
        super().__init__(sign_name, timeout_s)
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.endpoint = endpoint.rstrip("/")
        self.region_id = region_id

    def signed_params(self, action: str, params: dict[str, str]) -> dict[str, str]:
        """``params`` plus the common parameters and the signature of a POST."""
        full = {
            "AccessKeyId": self.access_key_id,
            "Action": action,
            "Format": "JSON",
            "RegionId": self.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
            **params,
        }
        full["Signature"] = rpc_signature(self._secret, "POST", full)
        return full

    async def _send(self, requests: list[SmsRequest]) -> list[SendResult]:
        if len(requests) == 1:
            request = requests[0]
            params = {
                "PhoneNumbers": request.phone,
                "SignName": self.sign_name,
                "TemplateCode": request.template_id,
                "TemplateParam": json.dumps(request.params, ensure_ascii=False),
            }
            if request.out_id:
                params["OutId"] = request.out_id
            action = "SendSms"
        else:
            params = {
                "PhoneNumberJson": json.dumps([r.phone for r in requests]),
                "SignNameJson": json.dumps([self.sign_name] * len(requests), ensure_ascii=False),
                "TemplateCode": requests[0].template_id,
                "TemplateParamJson": json.dumps([r.params for r in requests], ensure_ascii=False),
            }
            refs = {r.out_id for r in requests}
            if len(refs) == 1 and requests[0].out_id:  # a batch's one reference
                params["OutId"] = requests[0].out_id
            action = "SendBatchSms"
        body = self.signed_params(action, params)
        async with self.session().post(f"{self.endpoint}/", data=body) as response:
            status = response.status
            try:
                payload = json.loads(await response.text())
            except ValueError as exc:
                if status >= 500:
                    payload = {"Code": "ServiceUnavailable", "Message": f"HTTP {status}"}
                else:
                    raise ProviderResponseError(f"HTTP {status}: not JSON") from exc
        if not isinstance(payload, dict) or "Code" not in payload:
            raise ProviderResponseError(f"HTTP {status}: no Code in {str(payload)[:100]}")
        code = str(payload["Code"])
        message = str(payload.get("Message", ""))
        if code == "OK":
            biz_id = str(payload.get("BizId", ""))
            return [SendResult(r.phone, Outcome.SENT, code, message, provider_id=biz_id)
                    for r in requests]
        if status >= 500 and code not in THROTTLE_CODES:
            outcome, delay = Outcome.RETRY, None
        else:
            outcome, delay = self.classify(code)
        return [SendResult(r.phone, outcome, code, message, retry_after=delay) for r in requests]

    async def _post(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        async with self.session().post(f"{self.endpoint}/",
                                       data=self.signed_params(action, params)) as response:
            status, text = response.status, await response.text()
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise ProviderResponseError(f"HTTP {status}: not JSON") from exc
        if not isinstance(payload, dict) or payload.get("Code") != "OK":
            code = payload.get("Code") if isinstance(payload, dict) else None
            raise ProviderResponseError(f"HTTP {status}: {action} answered {str(code)[:60]}")
        return payload

    async def _find(self, phone: str, ref: str, since: float) -> SentRecord | None:
        """QuerySendDetails by number and send date (the China date of ``since``, and the next
        one when ``since`` is within a minute of midnight), page by page, matching ``OutId``."""
        days = sorted({datetime.fromtimestamp(since + shift, CHINA).date() for shift in (0, 60)})
        for day in days:
            for page in range(1, QUERY_MAX_PAGES + 1):
                payload = await self._post("QuerySendDetails", {
                    "PhoneNumber": phone, "SendDate": day.strftime("%Y%m%d"),
                    "PageSize": str(QUERY_PAGE_SIZE), "CurrentPage": str(page)})
                box = payload.get("SmsSendDetailDTOs") or {}
                items = box.get("SmsSendDetailDTO") if isinstance(box, dict) else None
                if not isinstance(items, list):
                    raise ProviderResponseError("QuerySendDetails: no SmsSendDetailDTO list")
                for item in items:
                    if isinstance(item, dict) and str(item.get("OutId", "")) == ref:
                        state = SEND_STATUS.get(str(item.get("SendStatus", "")), "pending")
                        return SentRecord("", state, str(item.get("ErrCode", "")),
                                          str(item.get("ReceiveDate") or "")
                                          if state != "pending" else "")
                if len(items) < QUERY_PAGE_SIZE:
                    break
        return None

    def classify(self, code: str) -> tuple[Outcome, float | None]:
        if code == "OK":
            return Outcome.SENT, None
        if code in THROTTLE_CODES:
            return Outcome.THROTTLED, THROTTLE_CODES[code]
        if code in RETRY_CODES:
            return Outcome.RETRY, None
        return Outcome.PERMANENT, None
