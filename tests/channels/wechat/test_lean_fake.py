"""The WeChat API fake behind ``fakes.lean_http`` (the broadcast benchmark's and exactly-once
tests' transport) answers the product's API client as the aiohttp-served fake does: the token
and its checks, template sends with ``client_msg_id``, injected errors from another process,
malformed requests, unknown routes, and many requests on kept-alive connections at once."""
from __future__ import annotations

import asyncio
import secrets

import aiohttp
import pytest

from channels.wechat.api import WeChatApi
from channels.wechat.errors import WeChatApiError
from fakes.wechat_api import FakeWeChatApi
from tests.channels.wechat.test_adapter import openid

TPL = "/cgi-bin/message/template/send"
DATA = {"thing1": {"value": "幸福小区计划停电"}}


@pytest.fixture
async def lean():
    fake = FakeWeChatApi(app_id="wx" + secrets.token_hex(8), lean_http=True)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def api(lean, redis):
    client = WeChatApi(lean.base_url, lean.app_id, lean.app_secret, redis, retry_delays=())
    yield client
    await client.close()


async def test_templates_with_the_token_and_client_msg_id(lean, api):
    user = openid()
    first = await api.send_template(user, "TPL-1", DATA, client_msg_id="k1")
    assert await api.send_template(user, "TPL-1", DATA, client_msg_id="k1") == first  # de-duplicated
    assert await api.send_template(user, "TPL-1", DATA, client_msg_id="k2") != first
    assert [t["touser"] for t in lean.templates] == [user, user] and lean.duplicates == 1
    assert lean.token_requests == 1


async def test_a_revoked_token_is_refused_and_refreshed_once(lean, api):
    await api.send_template(openid(), "TPL-1", DATA)
    lean.revoke_tokens()
    await api.send_template(openid(), "TPL-1", DATA)  # 40001 → refresh → sent
    assert lean.token_requests == 2 and len(lean.templates) == 2
    assert (TPL, 40001) in lean.calls


async def test_errors_injected_from_another_process_and_refusals(lean, api):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{lean.base_url}/_fake/fail",
                                json={"path": TPL, "errcode": 45009, "times": 1}) as resp:
            assert resp.status == 200 and (await resp.json())["ok"]
    with pytest.raises(WeChatApiError) as refused:
        await api.send_template(openid(), "TPL-1", DATA, retry_throttled=False)
    assert refused.value.errcode == 45009
    with pytest.raises(WeChatApiError) as bad:
        await api.send_template("x", "TPL-1", DATA)  # not an openid
    assert bad.value.errcode == 40003


async def test_malformed_requests_and_unknown_routes(lean):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{lean.base_url}{TPL}?access_token=" + "A" * 40, data=b"{") as resp:
            assert (await resp.json())["errcode"] == 40001  # the token is checked first
        async with session.get(f"{lean.base_url}/cgi-bin/token?grant_type=client_credential"
                               f"&appid={lean.app_id}&secret=wrong") as resp:
            assert (await resp.json())["errcode"] == 40125
        async with session.get(f"{lean.base_url}/nowhere") as resp:
            assert resp.status == 404
    reader, writer = await asyncio.open_connection(*lean.base_url[len("http://"):].split(":"))
    writer.write(b"POST /_fake/fail HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    await writer.drain()
    assert (await reader.read()).startswith(b"HTTP/1.1 411 ")  # answered, then closed
    writer.close()


async def test_many_concurrent_sends_on_kept_alive_connections(lean, api):
    await api.send_template(openid(), "TPL-1", DATA)  # the token, cached from here on
    users = [openid() for _ in range(300)]
    msgids = await asyncio.gather(*(api.send_template(u, "TPL-1", DATA, client_msg_id=f"k{u}")
                                    for u in users))
    assert len(set(msgids)) == 300
    assert sorted(t["touser"] for t in lean.templates[1:]) == sorted(users)
