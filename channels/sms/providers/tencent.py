"""Tencent Cloud SMS: SendSms (API version 2021-01-11) signed with TC3-HMAC-SHA256.

Signature v3: ``CanonicalRequest = METHOD \\n / \\n query \\n content-type:…\\nhost:…\\n \\n
content-type;host \\n hex(SHA256(payload))``; ``StringToSign = "TC3-HMAC-SHA256" \\n timestamp \\n
date/service/tc3_request \\n hex(SHA256(CanonicalRequest))``; the key is derived as
``HMAC(HMAC(HMAC("TC3" + SecretKey, date), service), "tc3_request")`` and the signature is
``hex(HMAC-SHA256(key, StringToSign))`` (date = UTC date of the timestamp).

Every answer is HTTP 200: ``{"Response": {"Error": {Code, Message}, RequestId}}`` for a failed
request, else ``{"Response": {"SendStatusSet": [{SerialNo, PhoneNumber, Fee, Code, Message,
…}], RequestId}}`` with ``Code == "Ok"`` per delivered number.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from typing import ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from channels.sms.providers.base import (
    Outcome, ProviderResponseError, SendResult, SentRecord, SmsRequest, SmsSender,
)

API_VERSION = "2021-01-11"
SERVICE = "sms"
CONTENT_TYPE = "application/json; charset=utf-8"

THROTTLE_CODES = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,
    "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
    "LimitExceeded.PhoneNumberDailyLimit": 6 * 3600.0,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": 6 * 3600.0,
    "LimitExceeded.DeliveryFrequencyLimit": 60.0,
    "LimitExceeded.AppDailyLimit": 3600.0,
    "LimitExceeded.AppGlobalDailyLimit": 3600.0,
    "RequestLimitExceeded": 5.0,
}
THROTTLE_PREFIX = "LimitExceeded."   # any other LimitExceeded.* is flow control too
THROTTLE_DEFAULT = 60.0
CHINA = ZoneInfo("Asia/Shanghai")
PULL_LIMIT = 100                     # the most PullSmsSendStatusByPhoneNumber returns
RETRY_PREFIXES = ("InternalError.", "InternalError")
RETRY_CODES = {"FailedOperation.JsonParseFail", "ResourceUnavailable"}


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def canonical_request(payload: str, host: str, method: str = "POST", query: str = "",
                      content_type: str = CONTENT_TYPE) -> str:
    """The canonical request over the signed headers ``content-type;host``."""
    return "\n".join([
        method, "/", query,
        f"content-type:{content_type}\nhost:{host}\n",
        "content-type;host",
        hashlib.sha256(payload.encode()).hexdigest(),
    ])


def tc3_signature(secret_key: str, service: str, timestamp: int, canonical: str) -> str:
    """hex(HMAC-SHA256(derived key, StringToSign)) of a canonical request."""
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), f"{date}/{service}/tc3_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def tc3_authorization(secret_id: str, secret_key: str, service: str, host: str, payload: str,
                      timestamp: int) -> str:
    """The ``Authorization`` header of a JSON POST."""
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    signature = tc3_signature(secret_key, service, timestamp, canonical_request(payload, host))
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/{service}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}")


class TencentSmsSender(SmsSender):
    """SendSms with up to 200 numbers sharing one template and one parameter set."""

    name: ClassVar[str] = "tencent"
    max_batch: ClassVar[int] = 200

    def __init__(self, secret_id: str, secret_key: str, sdk_app_id: str, endpoint: str,
                 sign_name: str, region: str = "ap-guangzhou", timeout_s: float = 5.0) -> None:
        super().__init__(sign_name, timeout_s)
        self.secret_id = secret_id
        self._secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        self.region = region

    def signed_headers(self, payload: str, action: str = "SendSms",
                       timestamp: int | None = None) -> dict[str, str]:
        """The request headers of a signed JSON POST of ``payload``."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        return {
            "Authorization": tc3_authorization(self.secret_id, self._secret_key, SERVICE,
                                               self.host, payload, timestamp),
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Version": API_VERSION,
            "X-TC-Region": self.region,
        }

    async def _send(self, requests: list[SmsRequest]) -> list[SendResult]:
        # One call per distinct parameter set: Tencent takes one TemplateParamSet per request.
        by_params: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            by_params.setdefault(tuple(request.params.values()), []).append(index)
        results: list[SendResult | None] = [None] * len(requests)
        for params, indexes in by_params.items():
            group = [requests[i] for i in indexes]
            for i, result in zip(indexes, await self._call(group, list(params))):
                results[i] = result
        return results  # type: ignore[return-value]

    async def _call(self, group: list[SmsRequest], params: list[str]) -> list[SendResult]:
        body = {
            "PhoneNumberSet": [f"+86{r.phone}" for r in group],
            "SmsSdkAppId": self.sdk_app_id,
            "SignName": self.sign_name,
            "TemplateId": group[0].template_id,
            "TemplateParamSet": params,
            "SessionContext": group[0].out_id if len({r.out_id for r in group}) == 1 else "",
        }
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        async with self.session().post(f"{self.endpoint}/", data=payload.encode(),
                                       headers=self.signed_headers(payload)) as response:
            status = response.status
            text = await response.text()
        if status >= 500:
            return [SendResult(r.phone, Outcome.RETRY, f"HTTP{status}", "server error")
                    for r in group]
        try:
            answer = json.loads(text)["Response"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderResponseError(f"HTTP {status}: not a Tencent response") from exc
        if "Error" in answer:
            code = str(answer["Error"].get("Code", ""))
            outcome, delay = self.classify(code)
            return [SendResult(r.phone, outcome, code, str(answer["Error"].get("Message", "")),
                               retry_after=delay) for r in group]
        statuses = {}
        for item in answer.get("SendStatusSet") or []:
            phone = str(item.get("PhoneNumber", ""))[-11:]
            statuses[phone] = item
        results = []
        for request in group:
            item = statuses.get(request.phone)
            if item is None:
                results.append(SendResult(request.phone, Outcome.RETRY, "bad_response",
                                          "number missing from SendStatusSet"))
                continue
            code = str(item.get("Code", ""))
            outcome, delay = self.classify(code)
            results.append(SendResult(request.phone, outcome, code, str(item.get("Message", "")),
                                      provider_id=str(item.get("SerialNo", "")),
                                      retry_after=delay))
        return results

    def classify(self, code: str) -> tuple[Outcome, float | None]:
        if code == "Ok":
            return Outcome.SENT, None
        if code in THROTTLE_CODES:
            return Outcome.THROTTLED, THROTTLE_CODES[code]
        if code.startswith(THROTTLE_PREFIX):
            return Outcome.THROTTLED, THROTTLE_DEFAULT
        if code in RETRY_CODES or code.startswith(RETRY_PREFIXES):
            return Outcome.RETRY, None
        return Outcome.PERMANENT, None

    async def _find(self, phone: str, ref: str, since: float) -> SentRecord | None:
        """PullSmsSendStatusByPhoneNumber from ``since`` on, matching ``SessionContext``. It lists
        a message only once its status report is in, so "not found" is not conclusive."""
        body = {"BeginTime": int(since) - 60, "EndTime": int(max(since, time.time())) + 3600,
                "Offset": 0,
                "Limit": PULL_LIMIT, "PhoneNumber": f"+86{phone}", "SmsSdkAppId": self.sdk_app_id}
        payload = json.dumps(body, separators=(",", ":"))
        async with self.session().post(
                f"{self.endpoint}/", data=payload.encode(),
                headers=self.signed_headers(payload, "PullSmsSendStatusByPhoneNumber")) as response:
            status, text = response.status, await response.text()
        try:
            answer = json.loads(text)["Response"]
            items = answer.get("PullSmsSendStatusSet")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProviderResponseError(f"HTTP {status}: not a Tencent response") from exc
        if "Error" in answer or not isinstance(items, list):
            raise ProviderResponseError(f"HTTP {status}: pull refused")
        for item in items:
            if not isinstance(item, dict) or str(item.get("SessionContext", "")) != ref:
                continue
            seconds = item.get("UserReceiveTime")
            reported_at = datetime.fromtimestamp(seconds, CHINA).strftime("%Y-%m-%d %H:%M:%S") \
                if isinstance(seconds, int) and not isinstance(seconds, bool) else ""
            delivered = item.get("ReportStatus") == "SUCCESS"
            return SentRecord(str(item.get("SerialNo", "")),
                              "delivered" if delivered else "undelivered",
                              str(item.get("Description", "")), reported_at)
        return None
