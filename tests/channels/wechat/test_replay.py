"""Signed URLs cannot be replayed with another body; WeChat's own retries still get 'success';
numbers from outside are ASCII digits only. Gateway apps on loopback, real Redis."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time

import pytest

from channels.digits import ascii_decimal, ascii_int
from channels.wechat.config import WeChatConfig, WeChatConfigError
from tests.channels.wechat.conftest import AES_KEY
from fakes.wechat_api import wechat_signature


def openid() -> str:
    return "o" + secrets.token_hex(14)


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_a_signed_url_replayed_with_another_body_is_refused(make_gateways, mode, caplog):
    gw = await make_gateways(WECHAT_ENCRYPT_MODE=mode)
    p = gw.pusher()
    user, attacker_target = openid(), openid()
    query, body = p.build(p.text_fields(user, "查电费"))
    assert await p.post_raw(gw.session, query, body) == (200, "success")
    await until(lambda: gw.wechat_api.texts_to(user))

    # The captured URL (signature, timestamp, nonce) with a body of the attacker's choosing.
    forged_query, forged_body = p.build(p.text_fields(attacker_target, "伪造的消息"),
                                        timestamp=query["timestamp"], nonce=query["nonce"])
    with caplog.at_level(logging.WARNING, logger="channels.wechat.webhook"):
        status, _ = await p.post_raw(gw.session, forged_query, forged_body)
    assert status == 403
    assert any("replay" in r.getMessage() for r in caplog.records)
    await asyncio.sleep(0.3)
    assert not gw.rasa.received.get(f"wechat:{attacker_target}")
    assert gw.rasa.received[f"wechat:{user}"] == ["查电费"]


async def test_wechat_retries_of_the_same_push_get_success_and_one_answer(make_gateways):
    gw = await make_gateways(count=2, WECHAT_ENCRYPT_MODE="plain")
    p0, p1 = gw.pusher(0), gw.pusher(1)
    user = openid()
    query, body = p0.build(p0.text_fields(user, "重试的消息"))
    # WeChat repeats the very same request (URL and body) up to three times, to any instance.
    results = [await (p0 if i % 2 else p1).post_raw(gw.session, query, body) for i in range(4)]
    assert results == [(200, "success")] * 4
    await until(lambda: gw.wechat_api.texts_to(user))
    await asyncio.sleep(0.3)
    assert gw.rasa.received[f"wechat:{user}"] == ["重试的消息"]


async def test_url_verification_cannot_be_replayed_with_another_echostr(make_gateways):
    gw = await make_gateways()
    p = gw.pusher()
    ts, nonce = str(int(time.time())), "123456789"
    assert await p.verify_url(gw.session, echostr="first", timestamp=ts, nonce=nonce) == (200, "first")
    assert await p.verify_url(gw.session, echostr="first", timestamp=ts, nonce=nonce) == (200, "first")
    status, _ = await p.verify_url(gw.session, echostr="<script>", timestamp=ts, nonce=nonce)
    assert status == 403


async def test_compatible_mode_requires_the_encrypted_part(make_gateways):
    gw = await make_gateways(WECHAT_ENCRYPT_MODE="compatible")
    user = openid()
    compatible = gw.pusher()
    query, body = compatible.build(compatible.text_fields(user, "兼容模式"))
    # The plaintext half alone (no encrypt_type=aes / msg_signature): nothing signs this body.
    plain_query = {k: v for k, v in query.items() if k not in ("encrypt_type", "msg_signature")}
    assert (await compatible.post_raw(gw.session, plain_query, body))[0] == 403
    no_msg_signature = {k: v for k, v in query.items() if k != "msg_signature"}
    assert (await compatible.post_raw(gw.session, no_msg_signature, body))[0] == 400
    assert await compatible.post_raw(gw.session, query, body) == (200, "success")
    await until(lambda: gw.wechat_api.texts_to(user))
    assert gw.rasa.received[f"wechat:{user}"] == ["兼容模式"]


# --- numbers from outside: ASCII digits only -------------------------------------------------------

@pytest.mark.parametrize("timestamp", ["²", "١٧٠٠٠٠٠٠٠٠", "1700000000\n", " 1700000000", "+1700000000"])
async def test_a_timestamp_that_is_not_ascii_digits_is_refused_not_a_500(make_gateways, timestamp):
    gw = await make_gateways(WECHAT_ENCRYPT_MODE="plain")
    p = gw.pusher()
    nonce = "42"
    signed = {"timestamp": timestamp, "nonce": nonce,
              "signature": wechat_signature(gw.env["WECHAT_TOKEN"], timestamp, nonce)}
    async with gw.session.get(f"{gw.urls[0]}/wechat", params=dict(signed, echostr="x")) as resp:
        assert resp.status == 403
    status, _ = await p.post_raw(gw.session, signed, "<xml><MsgType>text</MsgType></xml>")
    assert status == 403


async def test_a_create_time_that_is_not_ascii_digits_is_a_bad_request(make_gateways):
    gw = await make_gateways(WECHAT_ENCRYPT_MODE="plain")
    p = gw.pusher()
    user = openid()
    fields = p.text_fields(user, "hi")
    fields["CreateTime"] = "²"
    assert (await p.post(gw.session, fields))[0] == 400
    fields = p.event_fields(user, "TEMPLATESENDJOBFINISH", MsgID="²", Status="success")
    assert await p.post(gw.session, fields) == (200, "success")  # ignored, not a 500


def test_ascii_numbers():
    assert ascii_int("1700000000") == 1700000000
    assert ascii_int(42) == 42
    for bad in ("²", "٣", "1_000", " 1", "1\n", "-1", "", "1.0", None, True, "9" * 19):
        assert ascii_int(bad) is None, bad
    assert ascii_decimal("2.5") == 2.5 and ascii_decimal("60") == 60.0
    for bad in ("nan", "inf", "1e3", "٣", "²", "-1", ".5", "1.", "1_0"):
        assert ascii_decimal(bad) is None, bad


@pytest.mark.parametrize("name,value", [("WECHAT_JOB_TIMEOUT_SECONDS", "nan"),
                                        ("WECHAT_JOB_TIMEOUT_SECONDS", "inf"),
                                        ("WECHAT_WORKERS", "٣"), ("WECHAT_WORKERS", "²")])
def test_config_numbers_must_be_ascii(name, value):
    env = {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s",
           "WECHAT_AES_KEY": AES_KEY, name: value}
    with pytest.raises(WeChatConfigError, match=name):
        WeChatConfig.from_env(env)
