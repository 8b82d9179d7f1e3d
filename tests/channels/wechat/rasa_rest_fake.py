"""FAKE of Rasa's REST channel contract (``POST /webhooks/rest/webhook``) for channel-level tests.

This is NOT Rasa and does not pretend to understand anything: it implements the wire contract the
gateway's router speaks (``{"sender", "message", "metadata"}`` in, a list of
``{"recipient_id", "text", "buttons"}`` out) with canned answers, so the WeChat channel can be
tested without a trained model.  Tests that need the real assistant use the lead's ``rasa_url``
fixture (marker ``e2e``).

Canned behaviour, by incoming message:
- ``/query_bill`` → a question with two buttons (payloads ``/inform{"month":"本月"}`` and ``…上个月``);
- ``长文本`` → one answer longer than WeChat's 2048-byte text limit;
- anything else → ``收到：<message>``.
It records every message per sender and notices if one sender is ever served concurrently.
"""
from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

LONG_SENTENCE = "根据阶梯电价规定，您本月的用电量已进入第二档，超出部分按每千瓦时0.5783元计费。"


async def _root(_request: web.Request) -> web.Response:
    return web.Response(text="Hello from Rasa: 3.6.21 (FAKE of the REST contract)")


class FakeRasaRest:
    """Serve the canned REST contract on loopback (``await start()`` returns the base URL)."""

    def __init__(self, max_delay_seconds: float = 0.0) -> None:
        self.max_delay = max_delay_seconds
        self.received: dict[str, list[str]] = defaultdict(list)
        self.metadata: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.overlaps: list[str] = []
        self._busy: set[str] = set()
        self._server: TestServer | None = None
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/webhooks/rest/webhook", self._webhook)
        app.router.add_get("/", _root)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        self.base_url = str(self._server.make_url("")).rstrip("/")
        return self.base_url

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    @staticmethod
    def answer_for(message: str) -> list[dict[str, Any]]:
        """The canned answer (without recipient_id) for ``message``."""
        if message == "/query_bill":
            return [{"text": "请问您要查询哪个月的电费？", "buttons": [
                {"title": "本月", "payload": '/inform{"month":"本月"}'},
                {"title": "上个月", "payload": '/inform{"month":"上个月"}'}]}]
        if message == "长文本":
            return [{"text": LONG_SENTENCE * 40}]
        return [{"text": f"收到：{message}"}]

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        sender, message = body["sender"], body.get("message", "")
        if sender in self._busy:
            self.overlaps.append(sender)
        self._busy.add(sender)
        try:
            if self.max_delay:
                await asyncio.sleep(random.uniform(0, self.max_delay))
            self.received[sender].append(message)
            self.metadata[sender].append(body.get("metadata") or {})
            return web.json_response([{"recipient_id": sender, **a} for a in self.answer_for(message)])
        finally:
            self._busy.discard(sender)
