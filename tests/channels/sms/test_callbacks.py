"""Provider callbacks under stress: Redis failing part-way through a batch, the allowlist behind
trusted proxies, numbers in other scripts' digits, undecodable bodies, and the token's strength.

Same setup as test_channel.py: the real gateway (create_app) on loopback, the session's real
Redis, the provider fakes, and the labelled fake of Rasa's REST contract.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError

from channels.config import ConfigError
from channels.sms import SMS_RUNTIME
from channels.sms.config import SmsConfig, SmsConfigError
from channels.sms.templates import TemplateBook, TemplateConfigError
from tests.channels.sms.conftest import sms_env
from fakes.aliyun_sms import report_items, up_item
from fakes.tencent_sms import reply_item

ROOT = Path(__file__).resolve().parents[3]


class RedisFailingOnce:
    """A real Redis client whose ``fail_at``-th ``command`` raises ConnectionError, as when the
    connection drops (a blip: the commands after it work again)."""

    def __init__(self, client, command: str, fail_at: int = 1) -> None:
        self._client = client
        self._command = command
        self._fail_at = fail_at
        self.calls = 0

    def __getattr__(self, name: str):
        command = getattr(self._client, name)
        if name != self._command:
            return command

        async def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self._fail_at:
                raise RedisConnectionError("Connection reset by peer (injected)")
            return await command(*args, **kwargs)

        return call


def uplink_batch(provider: str, phone: str, texts: list[str], base: int) -> list[dict]:
    if provider == "aliyun":
        return [up_item(phone, text, base + i, send_time=f"2026-11-23 10:00:0{i}")
                for i, text in enumerate(texts)]
    return [reply_item(phone, text, when=1795406400 + i) for i, text in enumerate(texts)]


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_redis_failing_mid_batch_loses_nothing_and_repeats_nothing(make_gateway, phone,
                                                                         provider):
    gw = await make_gateway(provider)
    webhooks = gw.runtime().webhooks
    # The 2nd item's queueing (its seen mark and its place in the number's queue: one step).
    webhooks.dispatcher = RedisFailingOnce(webhooks.dispatcher, "enqueue", fail_at=2)
    batch = uplink_batch(provider, phone, ["第一条", "第二条", "第三条"], 20001)
    status, body = await gw.post(f"/sms/{provider}/up", batch)
    assert status == 503 and body == ({"code": 1, "msg": "temporarily unavailable, please retry"}
                                      if provider == "aliyun" else
                                      {"result": 1, "errmsg": "temporarily unavailable, please retry"})
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == ["第一条"]
    # The provider pushes the whole batch again: the first is a duplicate, the rest are new.
    status, _ = await gw.post(f"/sms/{provider}/up", batch)
    assert status == 200
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == ["第一条", "第二条", "第三条"]
    assert len(gw.texts(phone)) == 3


async def test_report_batch_with_redis_failing_is_answered_with_an_error(make_gateway, phone):
    gw = await make_gateway("aliyun")
    await gw.post("/sms/aliyun/up", [up_item(phone, "你好", 21001)])
    await gw.settle()
    outbox = gw.runtime().outbox
    msg_id = gw.fake.sent[-1]["out_id"]
    report = report_items(gw.fake.sent[-1:], report_time="2026-11-23 10:00:09")
    real = outbox.redis
    outbox.redis = RedisFailingOnce(real, "get")  # the report's look-up of its message
    try:
        status, body = await gw.post("/sms/aliyun/report", report)
    finally:
        outbox.redis = real
    assert (status, body["code"]) == (503, 1)
    assert (await outbox.get(msg_id))["state"] == "sent"
    assert (await gw.post("/sms/aliyun/report", report))[0] == 200  # the provider's retry
    assert (await outbox.get(msg_id))["state"] == "delivered"


# -- numbers written in other scripts, undecodable input: 200 or 400, never 500 ---------------
ARABIC_INDIC = "١٧٩٥٤٠٦٤٠٠"   # 1795406400 in Arabic-Indic digits: int() would read it


async def test_tencent_uplink_time_in_other_digits_is_ignored_not_an_error(make_gateway, phone):
    gw = await make_gateway("tencent")
    for when in ("²", ARABIC_INDIC, "1e9", -1, 10**30, [1], "1795406400"):
        item = {**reply_item(phone, f"时间{when!r}"), "time": when}
        assert (await gw.post("/sms/tencent/up", item))[0] == 200
    await gw.settle()
    assert len(gw.rasa.received[f"sms:{phone}"]) == 7  # each one handled, none an error


async def test_numbers_in_other_scripts_are_not_phone_numbers(make_gateway, phone):
    gw = await make_gateway("aliyun")
    arabic_phone = phone[:3] + "".join(chr(0x0660 + int(d)) for d in phone[3:])
    status, body = await gw.post("/sms/aliyun/up", [up_item(arabic_phone, "你好", 22001),
                                                    up_item(phone, "你好", 22002)])
    assert (status, body) == (200, {"code": 0, "msg": "成功"})
    await gw.settle()
    assert f"sms:{arabic_phone}" not in gw.rasa.received
    assert gw.rasa.received[f"sms:{phone}"] == ["你好"]


async def test_report_times_in_other_digits_are_skipped(make_gateway, phone):
    gw = await make_gateway("aliyun")
    await gw.post("/sms/aliyun/up", [up_item(phone, "你好", 23001)])
    await gw.settle()
    msg_id = gw.fake.sent[-1]["out_id"]
    forged = report_items(gw.fake.sent[-1:], success=False,
                          report_time="２０２６-11-23 10:00:09")  # would sort after any real one
    assert (await gw.post("/sms/aliyun/report", forged))[0] == 200
    assert (await gw.runtime().outbox.get(msg_id))["state"] == "sent"
    good = report_items(gw.fake.sent[-1:], report_time="2026-11-23 10:00:09")
    assert (await gw.post("/sms/aliyun/report", good))[0] == 200
    assert (await gw.runtime().outbox.get(msg_id))["state"] == "delivered"


async def test_undecodable_input_is_refused_or_skipped(make_gateway, phone):
    gw = await make_gateway("aliyun")
    # A lone surrogate is valid JSON but no text: the item is skipped, the others handled.
    raw = json.dumps([up_item(phone, "x", 24001), up_item(phone, "好", 24002)]) \
        .replace('"x"', '"\\ud800"').encode()
    assert (await gw.post("/sms/aliyun/up", None, raw=raw))[0] == 200
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == ["好"]
    # Identities made of other fields (no sequence_id) may carry lone surrogates too.
    raw = json.dumps([{**up_item(phone, "再见", 0), "sequence_id": "", "send_time": "x"}]) \
        .replace('"x"', '"\\ud800"').encode()
    assert (await gw.post("/sms/aliyun/up", None, raw=raw))[0] == 200
    await gw.settle()
    assert gw.rasa.received[f"sms:{phone}"] == ["好", "再见"]
    url = f"{gw.urls[0]}/sms/aliyun/up?token={gw.token}"
    for content_type, data in (("application/json; charset=no-such-charset", b"[]"),
                               ("application/json", b"\xff\xfe\x00["),
                               ("application/json", b"[" * 200_000)):
        async with gw.session.post(url, data=data, headers={"Content-Type": content_type}) as r:
            assert r.status in (200, 400), (content_type, r.status)
    for token in ("%ED%A0%80", "%FF", "%00"):
        async with gw.session.post(f"{gw.urls[0]}/sms/aliyun/up?token={token}", data=b"[]") as r:
            assert r.status == 403, token


# -- the allowlist behind trusted proxies --------------------------------------------------------
async def post_from(url: str, token: str, phone: str, sequence: int,
                    forwarded_for: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/sms/aliyun/up?token={token}", headers=headers,
                                data=json.dumps([up_item(phone, "你好", sequence)])) as response:
            return response.status


async def test_allowlist_believes_x_forwarded_for_only_from_trusted_proxies(make_gateway, phone):
    behind_proxy = await make_gateway("aliyun", SMS_CALLBACK_ALLOWED_IPS="10.1.2.0/24",
                                      GATEWAY_TRUSTED_PROXIES="127.0.0.1")
    url = behind_proxy.urls[0]
    assert await post_from(url, behind_proxy.token, phone, 25001, "10.1.2.3") == 200
    assert await post_from(url, behind_proxy.token, phone, 25002, "::ffff:10.1.2.4") == 200
    assert await post_from(url, behind_proxy.token, phone, 25003, "10.9.9.9") == 403
    assert await post_from(url, behind_proxy.token, phone, 25004, "10.1.2.3, 10.9.9.9") == 403
    assert await post_from(url, behind_proxy.token, phone, 25005) == 403  # the proxy itself
    direct = await make_gateway("aliyun", SMS_CALLBACK_ALLOWED_IPS="10.1.2.0/24",
                                GATEWAY_TRUSTED_PROXIES="")
    assert await post_from(direct.urls[0], direct.token, phone, 25006, "10.1.2.3") == 403


async def test_ipv4_mapped_peer_matches_an_ipv4_allowlist(redis_url, rasa_fake, templates_file,
                                                          aliyun_fake, monkeypatch, phone):
    from channels.app import create_app
    from channels.config import GatewayConfig

    token = "t" * 16
    for key in [k for k in os.environ if k.startswith(("SMS_", "ALIYUN_SMS", "TENCENT_SMS",
                                                       "GATEWAY_"))]:
        monkeypatch.delenv(key)
    for key, value in sms_env("aliyun", aliyun_fake, templates_file, redis_url, rasa_fake.url,
                              token, SMS_CALLBACK_ALLOWED_IPS="127.0.0.0/8").items():
        monkeypatch.setenv(key, value)
    app = create_app(GatewayConfig.from_env())
    # A dual-stack socket: an IPv4 client is seen as ::ffff:127.0.0.1, as behind many setups.
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::ffff:127.0.0.1", 0))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert await post_from(url, token, phone, 26001) == 200
        await app[SMS_RUNTIME].webhooks.drain()
        assert rasa_fake.received[f"sms:{phone}"] == ["你好"]
    finally:
        await runner.cleanup()


# -- SMS_CALLBACK_TOKEN strength and clean configuration errors ----------------------------------
def test_callback_token_needs_16_characters():
    with pytest.raises(SmsConfigError, match="SMS_CALLBACK_TOKEN must be at least 16"):
        SmsConfig.from_env({"SMS_CALLBACK_TOKEN": "s3cret-token-15c"[:15]})
    assert SmsConfig.from_env({"SMS_CALLBACK_TOKEN": "x" * 16}).callback_token == "x" * 16
    assert SmsConfig.from_env({}).callback_token == ""  # unset: every callback refused


def test_sms_configuration_errors_are_gateway_configuration_errors(tmp_path):
    assert issubclass(SmsConfigError, ConfigError) and issubclass(TemplateConfigError, ConfigError)
    broken = tmp_path / "templates.yml"
    broken.write_text("templates:\n  generic_reply: {text: '${a}', params: [a], "
                      "max_param_length: many}\n", encoding="utf-8")
    with pytest.raises(TemplateConfigError, match="max_param_length"):
        TemplateBook.load(broken)


@pytest.mark.parametrize("variable", [
    {"SMS_CALLBACK_TOKEN": "short"},
    {"SMS_MAX_PARTS": "٣"},          # Arabic-Indic 3: float() would accept it
    {"SMS_TEMPLATES_FILE": "templates"},  # a broken templates file, with the channel enabled
])
def test_python_m_channels_exits_2_with_one_line(tmp_path, variable):
    broken = tmp_path / "templates.yml"
    broken.write_text("templates: [1, 2]\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SMS_", "ALIYUN_SMS", "TENCENT_SMS", "GATEWAY_"))}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL="redis://127.0.0.1:1/0",
               POWERDESK_RUN_DIR=str(tmp_path), GATEWAY_PORT="0", GATEWAY_ADMIN_PORT="0",
               SMS_PROVIDER="aliyun", SMS_SIGN_NAME="国网供电", ALIYUN_SMS_ACCESS_KEY_ID="id",
               ALIYUN_SMS_ACCESS_KEY_SECRET="secret", SMS_CALLBACK_TOKEN="x" * 16)
    env.update({k: str(broken) if v == "templates" else v for k, v in variable.items()})
    done = subprocess.run([sys.executable, "-m", "channels"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert line.startswith("gateway configuration error:")
    assert next(iter(variable)) in line or "templates" in line
