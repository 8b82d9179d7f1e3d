"""The providers' loopback fakes in a process of their own, with a counter of what they accepted.

Broadcast tests and the broadcast benchmark run the workers as separate processes and count, at
the providers, what each recipient received. This module serves :class:`FakeWeChatApi`,
:class:`FakeAliyunSms` and :class:`FakeTencentSms` (unchanged: it only reads their public
records of accepted messages; the WeChat fake behind :mod:`fakes.lean_http`, so that its
thousands of template messages per second cost the measured machine little) plus a small
control server:

- ``GET /totals``: ``{"wechat": n, "aliyun": n, "tencent": n}`` messages accepted so far (cheap:
  for polling while a worker runs);
- ``GET /counts``: messages accepted per recipient, ``{"wechat": {openid: n}, "aliyun": {phone:
  n}, "tencent": {phone: n}}`` (template and customer-service messages together for WeChat);
- ``GET /requests``: send requests answered so far per fake (accepted or refused), for rates;
- ``GET /refusals``: the error codes answered so far, counted (``{"wechat": {"<path> <errcode>":
  n}, "aliyun": {code: n}, "tencent": {code: n}}``).

Run ``python -m fakes.broadcast_fakes --config '<json>'``: it prints one JSON line (the URLs and
credentials, see :func:`serve`) and serves until its stdin closes. ``config`` holds
``wechat_template_ids`` (list), ``aliyun_templates`` ({code: [params]}), ``tencent_templates``
({id: number of params}), ``sign_name`` and ``only`` (subset of wechat/aliyun/tencent).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from fakes.aliyun_sms import FakeAliyunSms
from fakes.tencent_sms import FakeTencentSms
from fakes.wechat_api import FakeWeChatApi

FAKES = ("wechat", "aliyun", "tencent")


def wechat_counts(fake: FakeWeChatApi) -> Counter[str]:
    """Messages the WeChat fake accepted, per openid (templates and customer-service texts)."""
    counts: Counter[str] = Counter(t["touser"] for t in fake.templates)
    counts.update(m.openid for m in fake.sent)
    return counts


def sms_counts(fake: FakeAliyunSms | FakeTencentSms) -> Counter[str]:
    """Messages an SMS fake accepted, per 11-digit phone number."""
    return Counter(str(s["phone"])[-11:] for s in fake.sent)


class CountingFakes:
    """The fakes named in ``config["only"]`` (default: all three) and the control server."""

    def __init__(self, config: dict[str, Any]) -> None:
        only = set(config.get("only") or FAKES)
        sign = config.get("sign_name", "国网供电")
        template_ids = config.get("wechat_template_ids")
        self.wechat = FakeWeChatApi(app_id="wx" + secrets.token_hex(8),
                                    template_ids=set(template_ids) if template_ids else None,
                                    lean_http=True) \
            if "wechat" in only else None
        self.aliyun = FakeAliyunSms(sign_names=(sign,), templates={
            code: tuple(params) for code, params in (config.get("aliyun_templates") or {}).items()}) \
            if "aliyun" in only else None
        self.tencent = FakeTencentSms(sign_names=(sign,), templates={
            str(k): int(v) for k, v in (config.get("tencent_templates") or {}).items()}) \
            if "tencent" in only else None
        self._control: TestServer | None = None

    async def start(self) -> dict[str, str]:
        """Start every fake and the control server; returns what a client needs to use them."""
        info: dict[str, str] = {}
        if self.wechat is not None:
            info.update(wechat_url=await self.wechat.start(), wechat_app_id=self.wechat.app_id,
                        wechat_app_secret=self.wechat.app_secret)
        if self.aliyun is not None:
            info.update(aliyun_url=await self.aliyun.start(),
                        aliyun_key_id=self.aliyun.access_key_id,
                        aliyun_key_secret=self.aliyun.access_key_secret)
        if self.tencent is not None:
            info.update(tencent_url=await self.tencent.start(),
                        tencent_secret_id=self.tencent.secret_id,
                        tencent_secret_key=self.tencent.secret_key,
                        tencent_sdk_app_id=self.tencent.sdk_app_id)
        app = web.Application()
        app.router.add_get("/totals", self._totals)
        app.router.add_get("/counts", self._counts)
        app.router.add_get("/requests", self._requests)
        app.router.add_get("/refusals", self._refusals)
        self._control = TestServer(app, host="127.0.0.1")
        await self._control.start_server()
        info["control_url"] = str(self._control.make_url("")).rstrip("/")
        return info

    async def close(self) -> None:
        for server in (self._control, self.wechat, self.aliyun, self.tencent):
            if server is not None:
                await server.close()

    def totals(self) -> dict[str, int]:
        return {"wechat": len(self.wechat.templates) + len(self.wechat.sent) if self.wechat else 0,
                "aliyun": len(self.aliyun.sent) if self.aliyun else 0,
                "tencent": len(self.tencent.sent) if self.tencent else 0}

    async def _totals(self, _request: web.Request) -> web.Response:
        return web.json_response(self.totals())

    async def _counts(self, _request: web.Request) -> web.Response:
        return web.json_response({
            "wechat": dict(wechat_counts(self.wechat)) if self.wechat else {},
            "aliyun": dict(sms_counts(self.aliyun)) if self.aliyun else {},
            "tencent": dict(sms_counts(self.tencent)) if self.tencent else {}})

    async def _requests(self, _request: web.Request) -> web.Response:
        wechat = sum(1 for path, _ in self.wechat.calls if path.startswith("/cgi-bin/message/")) \
            if self.wechat else 0
        return web.json_response({"wechat": wechat,
                                  "aliyun": len(self.aliyun.requests) if self.aliyun else 0,
                                  "tencent": self.tencent.calls if self.tencent else 0})

    async def _refusals(self, _request: web.Request) -> web.Response:
        wechat = Counter(f"{path} {code}" for path, code in self.wechat.calls if code) \
            if self.wechat else {}
        return web.json_response({
            "wechat": dict(wechat),
            "aliyun": dict(Counter(code for _, code in self.aliyun.rejected)) if self.aliyun else {},
            "tencent": dict(Counter(self.tencent.rejected)) if self.tencent else {}})


async def serve(config: dict[str, Any]) -> None:
    """Serve the fakes; print their URLs and credentials as one JSON line; stop when stdin ends."""
    fakes = CountingFakes(config)
    print(json.dumps(await fakes.start()), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await fakes.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="{}", help="JSON: see the module docstring")
    asyncio.run(serve(json.loads(parser.parse_args().config)))


if __name__ == "__main__":
    main()
