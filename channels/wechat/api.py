"""Client for the parts of the WeChat official-account API the gateway uses.

Customer-service messages (客服消息), template messages, the custom menu and the access_token.
Every authenticated call refreshes the shared token once on 40001/40014/42001 and retries
transient failures (-1, throttling, network) a bounded number of times with backoff (throttling
not, with ``retry_throttled=False``: a broadcast backs off on its own); all other errors are
raised as :class:`WeChatApiError` for the caller to handle by meaning.

Template sends may carry ``client_msg_id``, WeChat's de-duplication id (防重入id): for the same
openid and ``client_msg_id`` WeChat sends one message only, within 10 minutes (beyond that it
does not guarantee it).
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from channels.digits import ascii_int
from channels.wechat.errors import WeChatApiError, WeChatUnavailable
from channels.wechat.tokens import TokenManager

log = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json; charset=utf-8"}


class WeChatApi:
    """Async WeChat API client sharing its access_token through ``redis``."""

    def __init__(self, base_url: str, app_id: str, app_secret: str, redis: Any, *,
                 timeout_seconds: float = 5.0, retry_delays: Sequence[float] = (0.2, 0.5, 1.0)) -> None:
        self.base_url = base_url.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._retry_delays = tuple(retry_delays)
        self._session: aiohttp.ClientSession | None = None
        self._token_query = ("", "")  # (access_token, its encoded query)
        self.tokens = TokenManager(redis, app_id, self._fetch_token)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # WeChat sets no cookies the client needs: no jar to update on every answer.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=200),
                cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _url(self, path: str, params: dict[str, str]) -> URL:
        """``path`` with ``params`` as an encoded URL; the access_token's query (the same on
        every call until it is refreshed) is encoded once, not on every message."""
        if list(params) == ["access_token"]:
            if self._token_query[0] != params["access_token"]:
                self._token_query = (params["access_token"], urlencode(params))
            query = self._token_query[1]
        else:
            query = urlencode(params)
        return URL(f"{self.base_url}{path}?{query}", encoded=True)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _raw(self, method: str, path: str, params: dict[str, str],
                   body: dict[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = _JSON if data is not None else None
        try:
            async with self._http().request(method, self._url(path, params), data=data,
                                            headers=headers) as resp:
                if resp.status >= 500:
                    raise WeChatUnavailable(f"HTTP {resp.status}", path)
                raw = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise WeChatUnavailable(f"{type(exc).__name__}: {exc}", path) from exc
        try:
            # Bytes: JSON is UTF-8 (WeChat labels it "encoding=utf-8", which is no charset, so
            # decoding as text would guess the charset of every answer).
            answer = json.loads(raw)
        except ValueError as exc:
            raise WeChatUnavailable(f"unparseable answer ({len(raw)} bytes)", path) from exc
        if not isinstance(answer, dict):
            raise WeChatUnavailable("answer is not a JSON object", path)
        errcode = answer.get("errcode", 0)
        if errcode not in (0, None):
            code = ascii_int(errcode)
            raise WeChatApiError(-1 if code is None else code, str(answer.get("errmsg", "")), path)
        return answer

    async def _fetch_token(self) -> tuple[str, int]:
        params = {"grant_type": "client_credential", "appid": self._app_id, "secret": self._app_secret}
        for attempt in range(len(self._retry_delays) + 1):
            try:
                answer = await self._raw("GET", "/cgi-bin/token", params, None)
                token, expires_in = answer.get("access_token"), answer.get("expires_in", 7200)
                if not isinstance(token, str) or not token:
                    raise WeChatUnavailable("no access_token in answer", "/cgi-bin/token")
                lifetime = ascii_int(expires_in)
                if not lifetime:
                    raise WeChatUnavailable(f"bad expires_in {str(expires_in)[:20]!r}", "/cgi-bin/token")
                return token, lifetime
            except WeChatApiError as exc:
                if not exc.is_transient or attempt == len(self._retry_delays):
                    raise
                await asyncio.sleep(self._retry_delays[attempt])
        raise AssertionError("unreachable")

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                   retry_throttled: bool = True) -> dict[str, Any]:
        """Call ``path`` with the shared access_token (refresh-once and bounded retries; with
        ``retry_throttled`` False, frequency limits are raised at once)."""
        refreshed = False
        attempt = 0
        token = await self.tokens.get()
        while True:
            try:
                return await self._raw(method, path, {"access_token": token}, body)
            except WeChatApiError as exc:
                if exc.is_token_error and not refreshed:
                    log.warning("wechat %s rejected the access_token (%s); refreshing once", path, exc.errcode)
                    refreshed = True
                    token = await self.tokens.refresh(stale=token)
                    continue
                if exc.is_transient and attempt < len(self._retry_delays) \
                        and (retry_throttled or not exc.is_throttled):
                    delay = self._retry_delays[attempt]
                    attempt += 1
                    log.warning("wechat %s failed (%s); retry %d in %.1fs", path, exc, attempt, delay)
                    await asyncio.sleep(delay)
                    continue
                raise

    async def send_text(self, openid: str, content: str, *, retry_throttled: bool = True) -> None:
        """Send a customer-service text message (客服消息; within 48 h of the user's last message)."""
        await self.call("POST", "/cgi-bin/message/custom/send",
                        {"touser": openid, "msgtype": "text", "text": {"content": content}},
                        retry_throttled=retry_throttled)

    async def send_template(self, openid: str, template_id: str, data: dict[str, Any],
                            url: str | None = None, *, client_msg_id: str | None = None,
                            retry_throttled: bool = True) -> int:
        """Send a template message; returns WeChat's msgid (reported later by
        TEMPLATESENDJOBFINISH). ``client_msg_id``: WeChat's de-duplication id (module doc)."""
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if url:
            body["url"] = url
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        answer = await self.call("POST", "/cgi-bin/message/template/send", body,
                                 retry_throttled=retry_throttled)
        msg_id = ascii_int(answer.get("msgid"), max_digits=20)
        if msg_id is None:
            raise WeChatUnavailable("no msgid in answer", "/cgi-bin/message/template/send")
        return msg_id

    async def create_menu(self, menu: dict[str, Any]) -> None:
        """Create (replace) the custom menu; ``menu`` is ``{"button": [...]}``."""
        await self.call("POST", "/cgi-bin/menu/create", menu)

    async def get_menu(self) -> dict[str, Any] | None:
        """The current custom menu (``{"button": [...]}``), or None when there is none (46003)."""
        try:
            answer = await self.call("GET", "/cgi-bin/menu/get")
        except WeChatApiError as exc:
            if exc.errcode == 46003:
                return None
            raise
        return answer.get("menu")

    async def delete_menu(self) -> None:
        """Delete the custom menu."""
        await self.call("GET", "/cgi-bin/menu/delete")
