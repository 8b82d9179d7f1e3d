"""Loopback fake of the WeChat official-account API, and of the WeChat server's pushes.

``FakeWeChatApi`` implements, with WeChat's real error codes, the endpoints the gateway uses:
``GET /cgi-bin/token``, ``POST /cgi-bin/message/custom/send``, ``POST /cgi-bin/message/template/send``,
``POST /cgi-bin/menu/create``, ``GET /cgi-bin/menu/get``, ``GET /cgi-bin/menu/delete``.  Tests
can tell it to fail: expire or revoke tokens (42001 / 40001), inject any errcode for the next N
calls of a path (-1, 45009, 45015 ...; also ``POST /_fake/fail`` ``{"path", "errcode",
"times"}`` from another process), refuse one user permanently (43004, 48002, 45015), or
enforce the per-user customer-service quota (45047).

Template sends honour ``client_msg_id`` as WeChat documents it (防重入id): for the same openid
and ``client_msg_id`` only one message is sent within ``client_msg_id_ttl`` (10 minutes); a
repeat within it is answered like the first send (same msgid) and sends nothing. With
``reporter`` (a :class:`WeChatPusher` to the gateway), each accepted template message is
reported by a ``TEMPLATESENDJOBFINISH`` push, signed and (in safe/compatible mode) encrypted
like WeChat's, either at once (``auto_report``) or when the test calls
:meth:`FakeWeChatApi.push_template_reports`.

With ``lean_http`` the same handlers are served by :mod:`fakes.lean_http` instead of aiohttp's
web server (the broadcast benchmark's fakes: a fraction of the CPU per request).

``WeChatPusher`` plays the WeChat server posting to our ``/wechat`` webhook: it signs every
request and, in safe/compatible mode, encrypts the body with wechatpy's own crypto (not ours).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import string
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from wechatpy.crypto import WeChatCrypto

from fakes.lean_http import LeanServer

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40014: "invalid access_token",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    42001: "access_token expired",
    43004: "require subscribe",
    45002: "content size out of limit",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    46003: "menu no exist",
    47001: "data format error",
    47003: "argument invalid!",
    48002: "api forbidden for user refuse message",
}

TEXT_LIMIT_BYTES = 2048


def _err(code: int) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": f"{ERRMSG.get(code, 'error')} rid: {secrets.token_hex(4)}"})


@dataclass
class SentMessage:
    """A customer-service message the fake accepted."""

    openid: str
    msgtype: str
    content: str
    at: float


@dataclass
class FakeWeChatApi:
    """State and behaviour of the fake API; ``await start()`` serves it on loopback."""

    app_id: str = "wx0123456789abcdef"
    app_secret: str = "fake-app-secret-0123456789abcdef"
    token_lifetime: int = 7200
    cs_quota: int | None = None  # customer-service messages per user between two user messages
    template_ids: set[str] | None = None  # templates added to the account (我的模板); None = any
    latency_seconds: float = 0.0
    sent: list[SentMessage] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    menu: dict[str, Any] | None = None
    token_requests: int = 0
    calls: list[tuple[str, int]] = field(default_factory=list)  # (path, errcode answered)
    client_msg_id_ttl: float = 600.0  # WeChat: one message per openid + client_msg_id, 10 min
    duplicates: int = 0               # template sends answered from a client_msg_id
    reporter: WeChatPusher | None = None
    auto_report: bool = False
    report_status: str = "success"    # or "failed:user block", "failed: system failed"
    lean_http: bool = False           # serve through fakes.lean_http (benchmarks: cheaper per request)

    def __post_init__(self) -> None:
        self._client_msg_ids: dict[tuple[str, str], tuple[int, float]] = {}
        self._unreported: list[dict[str, Any]] = []
        self._report_tasks: set[asyncio.Task] = set()
        self._tokens: dict[str, float] = {}
        self._fail: dict[str, deque[int]] = defaultdict(deque)
        self._refusing: dict[str, int] = {}
        self._cs_count: dict[str, int] = defaultdict(int)
        self._next_msgid = 1000
        self._server: TestServer | LeanServer | None = None
        self.base_url = ""

    # --- control -------------------------------------------------------------------------
    async def start(self) -> str:
        """Serve on a free loopback port; returns the base URL (for WECHAT_API_BASE_URL).
        With ``lean_http``, the same handlers behind :class:`fakes.lean_http.LeanServer`."""
        if self.lean_http:
            self._server = LeanServer(self._routes())
            self.base_url = await self._server.start()
            return self.base_url
        self._server = TestServer(self._make_app(), host="127.0.0.1")
        await self._server.start_server()
        self.base_url = str(self._server.make_url("")).rstrip("/")
        return self.base_url

    async def close(self) -> None:
        """Stop serving (after the report pushes under way)."""
        if self._report_tasks:
            await asyncio.gather(*self._report_tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.close()

    async def push_template_reports(self, status: str | None = None) -> list[tuple[int, str]]:
        """Push ``TEMPLATESENDJOBFINISH`` for every accepted template message not reported yet
        (``status`` default ``report_status``) to the ``reporter``; the gateway's answers."""
        assert self.reporter is not None, "FakeWeChatApi.reporter is not set"
        pending, self._unreported = self._unreported, []
        answers = []
        async with aiohttp.ClientSession() as session:
            for template in pending:
                fields = self.reporter.event_fields(template["touser"], "TEMPLATESENDJOBFINISH",
                                                    MsgID=template["msgid"],
                                                    Status=status or self.report_status)
                answers.append(await self.reporter.post(session, fields))
        return answers

    def expire_tokens(self) -> None:
        """Every issued token expires now (next use answers 42001)."""
        for token in self._tokens:
            self._tokens[token] = 0.0

    def revoke_tokens(self) -> None:
        """Forget every issued token (next use answers 40001, as after a secret reset)."""
        self._tokens.clear()

    def fail_next(self, path: str, errcode: int, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``path`` with ``errcode`` (after token checks)."""
        self._fail[path].extend([errcode] * times)

    def refuse_user(self, openid: str, errcode: int) -> None:
        """Customer-service sends to ``openid`` fail with ``errcode`` (45015, 43004, 48002)."""
        self._refusing[openid] = errcode

    def user_interacted(self, openid: str) -> None:
        """The user messaged the account: the 48-hour window and CS quota start over."""
        if self._refusing.get(openid) == 45015:
            del self._refusing[openid]
        self._cs_count[openid] = 0

    def texts_to(self, openid: str) -> list[str]:
        """Contents of the text messages sent to ``openid``, in order."""
        return [m.content for m in self.sent if m.openid == openid and m.msgtype == "text"]

    def templates_to(self, openid: str) -> list[dict[str, Any]]:
        """The template messages accepted for ``openid`` (request bodies plus msgid), in order."""
        return [t for t in self.templates if t["touser"] == openid]

    @property
    def valid_tokens(self) -> list[str]:
        """Tokens that would currently be accepted."""
        now = time.time()
        return [t for t, exp in self._tokens.items() if exp > now]

    # --- HTTP ----------------------------------------------------------------------------
    def _routes(self) -> dict[tuple[str, str], Any]:
        return {("GET", "/cgi-bin/token"): self._token,
                ("POST", "/cgi-bin/message/custom/send"): self._custom_send,
                ("POST", "/cgi-bin/message/template/send"): self._template_send,
                ("POST", "/cgi-bin/menu/create"): self._menu_create,
                ("GET", "/cgi-bin/menu/get"): self._menu_get,
                ("GET", "/cgi-bin/menu/delete"): self._menu_delete,
                ("GET", "/_fake/state"): self._state,  # for a fake running in another process
                ("POST", "/_fake/fail"): self._control_fail}

    def _make_app(self) -> web.Application:
        app = web.Application()
        for (method, path), handler in self._routes().items():
            app.router.add_route(method, path, handler)
        return app

    async def _control_fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_next(str(body["path"]), int(body["errcode"]), int(body.get("times", 1)))
        return web.json_response({"ok": True})

    async def _state(self, _request: web.Request) -> web.Response:
        return web.json_response({"sent": [[m.openid, m.content, m.at] for m in self.sent],
                                  "token_requests": self.token_requests})

    async def _latency(self) -> None:
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)

    async def _token(self, request: web.Request) -> web.Response:
        await self._latency()
        self.token_requests += 1
        q = request.query
        if q.get("grant_type") != "client_credential":
            return self._answer(request, 40002)
        if not q.get("appid"):
            return self._answer(request, 41002)
        if q.get("appid") != self.app_id:
            return self._answer(request, 40013)
        if q.get("secret") != self.app_secret:
            return self._answer(request, 40125)
        injected = self._injected(request.path)
        if injected:
            return self._answer(request, injected)
        now = time.time()
        # Like WeChat: a new token leaves the previous ones valid for at most 5 more minutes.
        for token, exp in self._tokens.items():
            self._tokens[token] = min(exp, now + 300)
        token = "".join(secrets.choice(string.ascii_letters + string.digits + "_-") for _ in range(136))
        self._tokens[token] = now + self.token_lifetime
        self.calls.append((request.path, 0))
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime})

    def _answer(self, request: web.Request, code: int) -> web.Response:
        self.calls.append((request.path, code))
        return _err(code)

    def _injected(self, path: str) -> int | None:
        queue = self._fail.get(path)
        return queue.popleft() if queue else None

    def _check_token(self, request: web.Request) -> int | None:
        token = request.query.get("access_token")
        if not token:
            return 41001
        if not re.fullmatch(r"[A-Za-z0-9_\-]{16,512}", token):
            return 40014
        exp = self._tokens.get(token)
        if exp is None:
            return 40001
        if exp <= time.time():
            return 42001
        return None

    async def _json(self, request: web.Request) -> dict[str, Any] | None:
        try:
            data = json.loads(await request.read())
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def _pre(self, request: web.Request) -> tuple[int | None, dict[str, Any] | None]:
        await self._latency()
        code = self._check_token(request) or self._injected(request.path)
        if code:
            return code, None
        if request.method == "POST":
            body = await self._json(request)
            if body is None:
                return 47001, None
            return None, body
        return None, {}

    async def _custom_send(self, request: web.Request) -> web.Response:
        code, body = await self._pre(request)
        if code:
            return self._answer(request, code)
        openid, msgtype = body.get("touser"), body.get("msgtype")
        if not isinstance(openid, str) or not re.fullmatch(r"[A-Za-z0-9_\-]{6,64}", openid):
            return self._answer(request, 40003)
        if openid in self._refusing:
            return self._answer(request, self._refusing[openid])
        if msgtype != "text" or not isinstance(body.get("text"), dict):
            return self._answer(request, 47001)
        content = body["text"].get("content")
        if not isinstance(content, str) or not content:
            return self._answer(request, 47001)
        if len(content.encode("utf-8")) > TEXT_LIMIT_BYTES:
            return self._answer(request, 45002)
        if self.cs_quota is not None and self._cs_count[openid] >= self.cs_quota:
            return self._answer(request, 45047)
        self._cs_count[openid] += 1
        self.sent.append(SentMessage(openid, msgtype, content, time.time()))
        return self._answer(request, 0)

    async def _template_send(self, request: web.Request) -> web.Response:
        code, body = await self._pre(request)
        if code:
            return self._answer(request, code)
        template_id = body.get("template_id")
        if not template_id or (self.template_ids is not None and template_id not in self.template_ids):
            return self._answer(request, 40037)
        openid = body.get("touser")
        if not isinstance(openid, str) or not re.fullmatch(r"[A-Za-z0-9_\-]{6,64}", openid):
            return self._answer(request, 40003)
        if self._refusing.get(openid) in (43004, 48002, 40003):  # not the 48-hour window's 45015
            return self._answer(request, self._refusing[openid])
        data = body.get("data")
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("value"), str) for v in data.values()):
            return self._answer(request, 47001)
        too_long = [k for k, v in data.items() if _template_value_too_long(k, v["value"])]
        if too_long:
            return self._answer(request, 47003)
        client_msg_id = body.get("client_msg_id")
        now = time.time()
        if isinstance(client_msg_id, str) and client_msg_id:
            earlier = self._client_msg_ids.get((openid, client_msg_id))
            if earlier is not None and now - earlier[1] < self.client_msg_id_ttl:
                self.duplicates += 1
                self.calls.append((request.path, 0))
                return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": earlier[0]})
        self._next_msgid += 1
        if isinstance(client_msg_id, str) and client_msg_id:
            self._client_msg_ids[(openid, client_msg_id)] = (self._next_msgid, now)
        accepted = {**body, "msgid": self._next_msgid}
        self.templates.append(accepted)
        self.calls.append((request.path, 0))
        if self.reporter is not None:
            self._unreported.append(accepted)
            if self.auto_report:
                task = asyncio.create_task(self.push_template_reports())
                self._report_tasks.add(task)
                task.add_done_callback(self._report_tasks.discard)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": self._next_msgid})

    async def _menu_create(self, request: web.Request) -> web.Response:
        code, body = await self._pre(request)
        if code:
            return self._answer(request, code)
        code = _validate_menu(body)
        if code:
            return self._answer(request, code)
        self.menu = {"button": body["button"]}
        return self._answer(request, 0)

    async def _menu_get(self, request: web.Request) -> web.Response:
        code, _ = await self._pre(request)
        if code:
            return self._answer(request, code)
        if self.menu is None:
            return self._answer(request, 46003)
        buttons = [dict(b, sub_button=b.get("sub_button", [])) for b in self.menu["button"]]
        self.calls.append((request.path, 0))
        return web.json_response({"menu": {"button": buttons}})

    async def _menu_delete(self, request: web.Request) -> web.Response:
        code, _ = await self._pre(request)
        if code:
            return self._answer(request, code)
        self.menu = None
        return self._answer(request, 0)


# 类目模板 field types with a length limit (WeChat's template-message documentation).
TEMPLATE_FIELD_LIMITS = {"thing": 20, "short_thing": 5, "character_string": 32, "number": 32,
                         "letter": 32, "symbol": 5, "phrase": 5, "name": 10, "phone_number": 17,
                         "car_number": 8}


def _template_value_too_long(field_name: str, value: str) -> bool:
    kind = re.sub(r"\d+$", "", field_name)
    return len(value) > TEMPLATE_FIELD_LIMITS.get(kind, 10_000)


def _blen(value: Any) -> int:
    return len(str(value).encode("utf-8"))


def _validate_menu(body: dict[str, Any]) -> int | None:
    """WeChat's menu rules: 1-3 buttons, 1-5 sub-buttons, name ≤16/≤60 bytes, key ≤128 bytes."""
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return 40016
    for button in buttons:
        if not isinstance(button, dict):
            return 47001
        if not button.get("name") or _blen(button["name"]) > 16:
            return 40018
        subs = button.get("sub_button")
        if subs:
            if not isinstance(subs, list) or len(subs) > 5:
                return 40023
            for sub in subs:
                if sub.get("type") not in ("click", "view"):
                    return 40024
                if not sub.get("name") or _blen(sub["name"]) > 60:
                    return 40025
                if sub["type"] == "click" and (not sub.get("key") or _blen(sub["key"]) > 128):
                    return 40026
                if sub["type"] == "view" and (not sub.get("url") or _blen(sub["url"]) > 1024):
                    return 40027
        else:
            if button.get("type") not in ("click", "view"):
                return 40017
            if button["type"] == "click" and (not button.get("key") or _blen(button["key"]) > 128):
                return 40019
    return None


# ------------------------------------------------------------------------------------------
# The WeChat server side: signed (and, in safe/compatible mode, encrypted) pushes to /wechat.
# ------------------------------------------------------------------------------------------

def wechat_signature(*parts: str) -> str:
    """WeChat's SHA1 over the sorted parts, computed independently of the gateway's code."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def message_xml(fields: dict[str, Any]) -> str:
    """A WeChat message document; strings as CDATA, integers bare."""
    parts = []
    for key, value in fields.items():
        inner = str(value) if isinstance(value, int) else _cdata(str(value))
        parts.append(f"<{key}>{inner}</{key}>")
    return "<xml>" + "".join(parts) + "</xml>"


@dataclass
class WeChatPusher:
    """Posts to a gateway's ``/wechat`` the way the WeChat server does."""

    base_url: str
    token: str
    app_id: str
    aes_key: str = ""
    mode: str = "plain"  # plain | compatible | safe
    account: str = "gh_0123456789ab"
    _msgid: int = field(default_factory=lambda: secrets.randbits(62) + 2**62)  # unique per pusher

    def next_msgid(self) -> int:
        """A fresh 64-bit MsgId."""
        self._msgid += 1
        return self._msgid

    def signed_query(self, timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
        """timestamp, nonce, signature (what WeChat adds to every request)."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**9))
        return {"timestamp": timestamp, "nonce": nonce,
                "signature": wechat_signature(self.token, timestamp, nonce)}

    def build(self, fields: dict[str, Any], *, timestamp: str | None = None,
              nonce: str | None = None) -> tuple[dict[str, str], str]:
        """Query parameters and body for a push of ``fields`` in this pusher's mode."""
        query = self.signed_query(timestamp, nonce)
        query["openid"] = str(fields.get("FromUserName", ""))
        plain = message_xml(fields)
        if self.mode == "plain":
            return query, plain
        crypto = WeChatCrypto(self.token, self.aes_key, self.app_id)
        envelope = crypto.encrypt_message(plain, query["nonce"], query["timestamp"])
        encrypted = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", envelope).group(1)
        signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", envelope).group(1)
        query.update({"encrypt_type": "aes", "msg_signature": signature})
        if self.mode == "safe":
            body = f"<xml><ToUserName>{_cdata(self.account)}</ToUserName><Encrypt>{_cdata(encrypted)}</Encrypt></xml>"
        else:  # compatible: plaintext fields and the ciphertext side by side
            body = plain[:-len("</xml>")] + f"<Encrypt>{_cdata(encrypted)}</Encrypt></xml>"
        return query, body

    def text_fields(self, openid: str, content: str, msgid: int | None = None,
                    create_time: int | None = None) -> dict[str, Any]:
        """Fields of a text message."""
        return {"ToUserName": self.account, "FromUserName": openid,
                "CreateTime": create_time or int(time.time()), "MsgType": "text",
                "Content": content, "MsgId": msgid or self.next_msgid()}

    def event_fields(self, openid: str, event: str, key: str | None = None,
                     create_time: int | None = None, **extra: Any) -> dict[str, Any]:
        """Fields of an event push."""
        fields: dict[str, Any] = {"ToUserName": self.account, "FromUserName": openid,
                                  "CreateTime": create_time or int(time.time()),
                                  "MsgType": "event", "Event": event}
        if key is not None:
            fields["EventKey"] = key
        fields.update(extra)
        return fields

    async def post(self, session: aiohttp.ClientSession, fields: dict[str, Any], *,
                   base_url: str | None = None, **kwargs: Any) -> tuple[int, str]:
        """Push ``fields``; returns (status, body text)."""
        query, body = self.build(fields, **kwargs)
        return await self.post_raw(session, query, body, base_url=base_url)

    async def post_raw(self, session: aiohttp.ClientSession, query: dict[str, str], body: str | bytes,
                       *, base_url: str | None = None) -> tuple[int, str]:
        """Post an arbitrary body with the given query (for forged/malformed requests)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        async with session.post(f"{base_url or self.base_url}/wechat", params=query, data=data,
                                headers={"Content-Type": "text/xml"}) as resp:
            return resp.status, await resp.text()

    async def verify_url(self, session: aiohttp.ClientSession, echostr: str = "echo-1234567890",
                         **kwargs: Any) -> tuple[int, str]:
        """The GET that the 公众平台 sends when the server URL is configured."""
        query = self.signed_query(**kwargs)
        query["echostr"] = echostr
        async with session.get(f"{self.base_url}/wechat", params=query) as resp:
            return resp.status, await resp.text()


__all__ = ["FakeWeChatApi", "SentMessage", "WeChatPusher", "message_xml", "wechat_signature"]
