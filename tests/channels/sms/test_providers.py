"""The two senders against loopback fakes that verify signatures and answer real error shapes."""
from __future__ import annotations

import pytest

from channels.sms.providers import Outcome, SmsRequest
from channels.sms.providers.aliyun import AliyunSmsSender
from channels.sms.providers.tencent import TencentSmsSender
from tests.channels.sms.conftest import SIGN
from tests.support.ports import free_port


def aliyun(fake, secret=None, sign=SIGN) -> AliyunSmsSender:
    return AliyunSmsSender(fake.access_key_id, secret or fake.access_key_secret, fake.url, sign,
                           timeout_s=3)


def tencent(fake, key=None, sign=SIGN, app_id=None) -> TencentSmsSender:
    return TencentSmsSender(fake.secret_id, key or fake.secret_key, app_id or fake.sdk_app_id,
                            fake.url, sign, timeout_s=3)


BILL = {"account": "******4567", "month": "2026年10月", "amount": "128.56", "due_date": "11月25日"}


async def test_aliyun_send_sms_signed_and_accepted(aliyun_fake, phone):
    sender = aliyun(aliyun_fake)
    try:
        result = await sender.send(SmsRequest(f"+86 {phone}", "SMS_900000005", BILL, out_id="m1"))
    finally:
        await sender.close()
    assert result.outcome is Outcome.SENT and result.code == "OK" and result.provider_id
    (sent,) = aliyun_fake.sent
    assert sent["phone"] == phone and sent["params"] == BILL and sent["out_id"] == "m1"
    assert sent["sign_name"] == SIGN and sent["action"] == "SendSms"


async def test_aliyun_batch_uses_send_batch_sms(aliyun_fake):
    phones = ["13800000001", "13900000002", "15000000003"]
    sender = aliyun(aliyun_fake)
    try:
        results = await sender.send_many(
            [SmsRequest(p, "SMS_900000005", {**BILL, "amount": str(i)}) for i, p in enumerate(phones)])
    finally:
        await sender.close()
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [s["phone"] for s in aliyun_fake.sent] == phones
    assert {s["action"] for s in aliyun_fake.sent} == {"SendBatchSms"}
    assert [s["params"]["amount"] for s in aliyun_fake.sent] == ["0", "1", "2"]


async def test_aliyun_wrong_secret_is_rejected_by_signature_check(aliyun_fake, phone):
    sender = aliyun(aliyun_fake, secret="wrong")
    try:
        result = await sender.send(SmsRequest(phone, "SMS_900000002", {}))
    finally:
        await sender.close()
    assert result.outcome is Outcome.PERMANENT and result.code == "SignatureDoesNotMatch"
    assert aliyun_fake.sent == [] and aliyun_fake.rejected == [(400, "SignatureDoesNotMatch")]


@pytest.mark.parametrize("code,outcome,status", [
    ("isv.BUSINESS_LIMIT_CONTROL", Outcome.THROTTLED, 200),
    ("isv.DAY_LIMIT_CONTROL", Outcome.THROTTLED, 200),
    ("isv.MOBILE_NUMBER_ILLEGAL", Outcome.PERMANENT, 200),
    ("isv.AMOUNT_NOT_ENOUGH", Outcome.PERMANENT, 200),
    ("isp.SYSTEM_ERROR", Outcome.RETRY, 200),
    ("ServiceUnavailable", Outcome.RETRY, 503),
])
async def test_aliyun_error_codes_are_classified(aliyun_fake, phone, code, outcome, status):
    aliyun_fake.fail_next(code, http_status=status)
    sender = aliyun(aliyun_fake)
    try:
        result = await sender.send(SmsRequest(phone, "SMS_900000002", {}))
    finally:
        await sender.close()
    assert (result.outcome, result.code) == (outcome, code)
    if outcome is Outcome.THROTTLED:
        assert result.retry_after and result.retry_after > 0


async def test_aliyun_fake_checks_templates_and_lengths(aliyun_fake, phone):
    sender = aliyun(aliyun_fake)
    try:
        unknown = await sender.send(SmsRequest(phone, "SMS_000", {}))
        too_long = await sender.send(SmsRequest(phone, "SMS_900000001", {"content": "电" * 36}))
        missing = await sender.send(SmsRequest(phone, "SMS_900000005", {"account": "1"}))
    finally:
        await sender.close()
    assert unknown.code == "isv.SMS_TEMPLATE_ILLEGAL"
    assert too_long.code == "isv.PARAM_LENGTH_LIMIT"
    assert missing.code == "isv.TEMPLATE_MISSING_PARAMETERS"
    assert {r.outcome for r in (unknown, too_long, missing)} == {Outcome.PERMANENT}


async def test_tencent_send_sms_signed_and_accepted(tencent_fake, phone):
    sender = tencent(tencent_fake)
    try:
        result = await sender.send(SmsRequest(phone, "900005", BILL, out_id="m2"))
    finally:
        await sender.close()
    assert result.outcome is Outcome.SENT and result.code == "Ok"
    (sent,) = tencent_fake.sent
    assert sent["phone"] == phone and sent["serial"] == result.provider_id
    assert sent["params"] == list(BILL.values())  # TemplateParamSet in the template's order


async def test_tencent_groups_numbers_sharing_parameters(tencent_fake):
    sender = tencent(tencent_fake)
    try:
        results = await sender.send_many([SmsRequest(p, "900005", BILL)
                                          for p in ("13800000011", "13800000012")]
                                         + [SmsRequest("13800000013", "900005", {**BILL, "amount": "9"})])
    finally:
        await sender.close()
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert len({r.provider_id for r in results}) == 3


@pytest.mark.parametrize("kwargs,code", [
    ({"key": "wrong"}, "AuthFailure.SignatureFailure"),
    ({"app_id": "1400999999"}, "UnauthorizedOperation.SmsSdkAppIdVerifyFail"),
    ({"sign": "别的签名"}, "FailedOperation.SignatureIncorrectOrUnapproved"),
])
async def test_tencent_request_errors_are_permanent(tencent_fake, phone, kwargs, code):
    sender = tencent(tencent_fake, **kwargs)
    try:
        result = await sender.send(SmsRequest(phone, "900002", {}))
    finally:
        await sender.close()
    assert (result.outcome, result.code) == (Outcome.PERMANENT, code)
    assert tencent_fake.sent == []


@pytest.mark.parametrize("code,outcome", [
    ("LimitExceeded.PhoneNumberThirtySecondLimit", Outcome.THROTTLED),
    ("LimitExceeded.PhoneNumberDailyLimit", Outcome.THROTTLED),
    ("FailedOperation.PhoneNumberInBlacklist", Outcome.PERMANENT),
    ("InvalidParameterValue.IncorrectPhoneNumber", Outcome.PERMANENT),
    ("InternalError.Timeout", Outcome.RETRY),
])
async def test_tencent_per_number_codes_are_classified(tencent_fake, phone, code, outcome):
    tencent_fake.number_code_next(code)
    sender = tencent(tencent_fake)
    try:
        result = await sender.send(SmsRequest(phone, "900002", {}))
    finally:
        await sender.close()
    assert (result.outcome, result.code) == (outcome, code)


async def test_tencent_request_limit_is_throttling(tencent_fake, phone):
    tencent_fake.fail_next("RequestLimitExceeded")
    sender = tencent(tencent_fake)
    try:
        result = await sender.send(SmsRequest(phone, "900002", {}))
    finally:
        await sender.close()
    assert result.outcome is Outcome.THROTTLED


async def test_unreachable_provider_is_a_retryable_failure(phone):
    sender = AliyunSmsSender("id", "secret", f"http://127.0.0.1:{free_port()}", SIGN, timeout_s=2)
    try:
        result = await sender.send(SmsRequest(phone, "SMS_1", {}))
    finally:
        await sender.close()
    assert (result.outcome, result.code) == (Outcome.RETRY, "network")


async def test_invalid_number_never_reaches_the_provider(aliyun_fake):
    sender = aliyun(aliyun_fake)
    try:
        result = await sender.send(SmsRequest("02588888888", "SMS_900000002", {}))
    finally:
        await sender.close()
    assert (result.outcome, result.code) == (Outcome.PERMANENT, "invalid_phone")
    assert aliyun_fake.requests == []


async def test_aliyun_fake_refuses_a_replayed_request(aliyun_fake, phone):
    sender = aliyun(aliyun_fake)
    body = sender.signed_params("SendSms", {"PhoneNumbers": phone, "SignName": SIGN,
                                            "TemplateCode": "SMS_900000002", "TemplateParam": "{}"})
    try:
        statuses = []
        for _ in range(2):
            async with sender.session().post(f"{aliyun_fake.url}/", data=body) as response:
                statuses.append((response.status, (await response.json())["Code"]))
    finally:
        await sender.close()
    assert statuses == [(200, "OK"), (400, "SignatureNonceUsed")]
    assert len(aliyun_fake.sent) == 1


async def test_aliyun_tampered_parameter_breaks_the_signature(aliyun_fake, phone):
    sender = aliyun(aliyun_fake)
    body = sender.signed_params("SendSms", {"PhoneNumbers": phone, "SignName": SIGN,
                                            "TemplateCode": "SMS_900000002", "TemplateParam": "{}"})
    body["PhoneNumbers"] = "13900000000"
    try:
        async with sender.session().post(f"{aliyun_fake.url}/", data=body) as response:
            answer = (response.status, (await response.json())["Code"])
    finally:
        await sender.close()
    assert answer == (400, "SignatureDoesNotMatch") and aliyun_fake.sent == []


async def test_tencent_stale_timestamp_is_refused(tencent_fake, phone):
    import json
    import time

    sender = tencent(tencent_fake)
    payload = json.dumps({"PhoneNumberSet": [f"+86{phone}"], "SmsSdkAppId": tencent_fake.sdk_app_id,
                          "SignName": SIGN, "TemplateId": "900002", "TemplateParamSet": []})
    try:
        headers = sender.signed_headers(payload, timestamp=int(time.time()) - 3600)
        async with sender.session().post(f"{tencent_fake.url}/", data=payload.encode(),
                                         headers=headers) as response:
            error = (await response.json())["Response"]["Error"]["Code"]
    finally:
        await sender.close()
    assert error == "AuthFailure.SignatureExpire" and tencent_fake.sent == []
