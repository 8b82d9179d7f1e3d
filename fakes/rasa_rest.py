"""FAKE of Rasa's REST channel contract (``POST /webhooks/rest/webhook``) for gateway unit tests.

This is NOT Rasa and understands nothing. It implements the wire contract the gateway's router
speaks — ``{"sender", "message", "metadata"}`` in, a JSON list of ``{"recipient_id", "text",
"buttons", "image", "custom"}`` out — with scripted answers, so the router and the web chat
channel can be tested without a trained model. Whole-stack tests use the real Rasa through the
lead's ``rasa_url`` / ``gateway_url`` fixtures (marker ``e2e``).

Scripted behaviour, by incoming message:
- ``按钮`` or ``/query_bill`` → a question with two buttons;
- ``两组按钮`` → two messages with buttons (two, then one): options numbered across an answer;
- ``长文本`` → one very long text (``LONG_SENTENCE`` × 40), for channels that split replies;
- ``两段`` → one text with a blank line (Rasa's socket.io output splits it in two) and buttons;
- ``图片`` → an image message;
- ``空`` → an empty list (Rasa had nothing to say);
- ``慢<seconds>`` (e.g. ``慢2``) → answers after that delay;
- ``坏JSON`` → a 200 response whose body is not JSON;
- anything else → ``收到：<message>``.
``fail_status`` (settable) makes every call answer that HTTP status; ``probe_delay_seconds``
(settable) delays the answer to the probe ``GET /``, like a Rasa too busy to answer it in time.
Every call is recorded, and overlapping calls for one sender are noticed (the router must
serialise a conversation).

``POST /conversations/<sender>/tracker/events`` (Rasa's HTTP API, as the hand-off uses it) takes
one event or a list of them (each a JSON object with an ``event`` name) and records them in
``tracker_events[sender]``; it answers the tracker's state without events, like
``include_events=NONE``, with ``paused`` following the recorded pause/resume events.

Turns, for the gateway's Rasa pool (``channels.rasa_nodes``): every answered message is
recorded in ``events[sender]`` as Rasa records it, a ``user`` event (``message_id`` from
``metadata["message_id"]``, as ``bot/rest_channel.py`` does) followed by one ``bot`` event per
answer message; ``GET /conversations/<sender>/tracker`` serves them. Several fakes given one
``events`` dict share their trackers, like Rasa nodes on one Redis. ``crash_next(mode)`` makes
the next webhook call drop its connection without answering: ``"before_record"`` (the node died
before saving the turn) or ``"after_record"`` (it died after saving it); the fake then answers
503 to everything, like a dead node behind a proxy, until ``fail_status`` is cleared.
``"drop_connection"``: the turn is recorded and only the connection drops (the node lives on).
``lock_lifetime_seconds`` (0: off) adds Rasa's conversation lock: a turn, and an append of
tracker events, waits until the conversation's ticket in ``locks`` (shared by fakes like Rasa
nodes on one Redis) has gone or expired, holds one for that many seconds and gives it back when
it ends, except when the node died mid-turn: then the ticket stays until it expires, as Rasa's
does in Redis.
"""
from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

LONG_SENTENCE = "根据阶梯电价规定，您本月的用电量已进入第二档，超出部分按每千瓦时0.5783元计费。"


class FakeRasaRest:
    """Serve the scripted REST contract on loopback; ``await start()`` returns the base URL."""

    def __init__(self, jitter_seconds: float = 0.0,
                 events: dict[str, list[dict[str, Any]]] | None = None,
                 locks: dict[str, float] | None = None, lock_lifetime_seconds: float = 0.0) -> None:
        self.jitter = jitter_seconds
        self.locks: dict[str, float] = {} if locks is None else locks  # sender -> ticket expiry
        self.lock_lifetime = lock_lifetime_seconds
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list) if events is None else events
        self.crashes: list[str] = []
        self.fail_status: int | None = None
        self.probe_delay_seconds = 0.0
        self.calls: list[dict[str, Any]] = []
        self.received: dict[str, list[str]] = defaultdict(list)
        self.tracker_events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.overlaps: list[str] = []
        self.max_parallel = 0
        self._parallel = 0
        self._busy: set[str] = set()
        self._server: TestServer | None = None
        self.url = ""

    def crash_next(self, mode: str, count: int = 1) -> None:
        """Drop the next ``count`` webhook calls' connections (``mode``: see the module doc)."""
        if mode not in ("before_record", "after_record", "drop_connection"):
            raise ValueError(mode)
        self.crashes.extend([mode] * count)

    async def start(self, port: int = 0) -> str:
        """Serve on ``port`` (0: a free one; a closed fake restarts on its old port)."""
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_post("/webhooks/rest/webhook", self._webhook)
        app.router.add_get("/", self._root)
        app.router.add_post("/conversations/{sender}/tracker/events", self._tracker_events)
        app.router.add_get("/conversations/{sender}/tracker", self._tracker)
        self._server = TestServer(app, host="127.0.0.1", port=port or None)
        await self._server.start_server()
        self.url = str(self._server.make_url("")).rstrip("/")
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    async def _root(self, _request: web.Request) -> web.Response:
        if self.probe_delay_seconds:
            await asyncio.sleep(self.probe_delay_seconds)
        if self.fail_status:
            return web.Response(status=self.fail_status)
        return web.Response(text="Hello from Rasa: 3.6.21 (FAKE of the REST contract)")

    def paused(self, sender: str) -> bool:
        """Whether the recorded events leave ``sender``'s tracker paused."""
        state = False
        for event in self.tracker_events[sender]:
            state = {"pause": True, "resume": False}.get(event.get("event"), state)
        return state

    async def _tracker(self, request: web.Request) -> web.Response:
        sender = request.match_info["sender"]
        if self.fail_status:
            return web.json_response({"error": "fake failure"}, status=self.fail_status)
        return web.json_response({"sender_id": sender, "paused": self.paused(sender),
                                  "events": list(self.events.get(sender, []))})

    def record_turn(self, sender: str, message: str, metadata: Any, answer: list[dict[str, Any]]) -> None:
        message_id = metadata.get("message_id") if isinstance(metadata, dict) else None
        turn = [{"event": "user", "text": message, "message_id": message_id or uuid.uuid4().hex,
                 "metadata": metadata or {}}]
        for item in answer:
            turn.append({"event": "bot", "text": item.get("text"),
                         "data": {k: item.get(k) for k in ("buttons", "image", "custom", "attachment")}})
        self.events.setdefault(sender, []).extend(turn)

    async def _tracker_events(self, request: web.Request) -> web.Response:
        sender = request.match_info["sender"]
        if self.fail_status:
            return web.json_response({"error": "fake failure"}, status=self.fail_status)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"status": "failure", "reason": "BadRequest"}, status=400)
        events = body if isinstance(body, list) else [body]
        if not events or not all(isinstance(e, dict) and isinstance(e.get("event"), str) for e in events):
            return web.json_response({"status": "failure", "reason": "BadRequest"}, status=400)
        if self.lock_lifetime:  # Rasa appends under the conversation's lock, as it runs a turn
            await self._wait_for_lock(sender)
        self.tracker_events[sender].extend(events)
        self.locks.pop(sender, None)
        return web.json_response({"sender_id": sender, "slots": {}, "latest_message": {},
                                  "paused": self.paused(sender), "events": None})

    @staticmethod
    def answer_for(message: str) -> list[dict[str, Any]]:
        if message in ("按钮", "/query_bill"):
            return [{"text": "请问您要查询哪个月的电费？", "buttons": [
                {"title": "本月", "payload": '/inform{"month":"本月"}'},
                {"title": "上个月", "payload": '/inform{"month":"上个月"}'}]}]
        if message == "两组按钮":
            return [{"text": "请选择要办理的业务：", "buttons": [
                {"title": "查电费", "payload": "/query_bill"},
                {"title": "查停电", "payload": "/query_outage"}]},
                {"text": "也可以：", "buttons": [{"title": "转人工", "payload": "/request_human"}]}]
        if message == "长文本":
            return [{"text": LONG_SENTENCE * 40}]
        if message == "两段":
            return [{"text": "第一段。\n\n第二段？", "buttons": [{"title": "是", "payload": "/affirm"}]}]
        if message == "图片":
            return [{"image": "https://example.com/bill.png"}]
        if message == "空":
            return []
        return [{"text": f"收到：{message}"}]

    async def _wait_for_lock(self, sender: str) -> None:
        """Wait until ``sender``'s ticket has gone or expired, then hold one."""
        loop = asyncio.get_running_loop()
        while self.locks.get(sender, 0.0) > loop.time():
            await asyncio.sleep(0.01)
        self.locks[sender] = loop.time() + self.lock_lifetime

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        sender, message = body["sender"], body.get("message", "")
        self.calls.append(body)
        if self.fail_status:
            return web.json_response({"error": "fake failure"}, status=self.fail_status)
        if self.lock_lifetime:
            await self._wait_for_lock(sender)
        if sender in self._busy:
            self.overlaps.append(sender)
        self._busy.add(sender)
        self._parallel += 1
        self.max_parallel = max(self.max_parallel, self._parallel)
        crash = None
        try:
            if message.startswith("慢"):
                await asyncio.sleep(float(message[1:]))
            elif self.jitter:
                await asyncio.sleep(random.uniform(0, self.jitter))
            crash = self.crashes.pop(0) if self.crashes else None
            if crash != "before_record":
                self.received[sender].append(message)
                self.record_turn(sender, message, body.get("metadata"), self.answer_for(message))
            if crash is not None:  # the connection drops, no answer
                if crash != "drop_connection":  # the node died: probes fail too
                    self.fail_status = 503
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)
            if message == "坏JSON":
                return web.Response(text="<html>oops</html>", content_type="text/html")
            return web.json_response([{"recipient_id": sender, **a} for a in self.answer_for(message)])
        finally:
            self._parallel -= 1
            self._busy.discard(sender)
            if self.lock_lifetime and crash in (None, "drop_connection"):
                self.locks.pop(sender, None)


def main() -> None:
    """``python -m fakes.rasa_rest --port N``: serve the fake until interrupted
    (the web-chat benchmark's ``--fake-rasa`` mode runs it as its own process)."""
    import argparse

    parser = argparse.ArgumentParser(description="FAKE of Rasa's REST channel contract")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="fixed answer delay")
    args = parser.parse_args()

    fake = FakeRasaRest()

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        if args.delay_ms:
            await asyncio.sleep(args.delay_ms / 1000)
        sender = body["sender"]
        return web.json_response([{"recipient_id": sender, **a}
                                  for a in fake.answer_for(body.get("message", ""))])

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", answer)
    app.router.add_get("/", fake._root)
    app.router.add_get("/status", fake._root)  # where scripts.stack waits for a Rasa to be ready
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
