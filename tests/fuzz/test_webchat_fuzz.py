"""Fuzz the web chat's socket.io endpoint (``/socket.io``).

One gateway (create_app, real Redis, the labelled Rasa fake; the web-chat rate limits off, so
every input reaches the router). Inputs:
- ``session_request`` and ``user_uttered`` through a real socket.io client (python-socketio),
  with payloads of every JSON type: None, numbers, lists, nested dicts, huge strings, lone
  surrogates, emoji, markup, full-width digits, session ids of every shape, ``customData`` and
  ``metadata`` of the wrong type or size. Each event is sent with an acknowledgement request,
  so the test waits until the gateway's handler (the Rasa round trip and the emits included)
  has finished;
- unknown event names with the same payloads;
- raw engine.io/socket.io packets on a websocket (broken packet types, namespaces, JSON,
  binary attachments), and engine.io HTTP long-polling requests with random query parameters
  and bodies (the HTTP status is checked there).

Pass: every HTTP answer below 500, and no unhandled exception logged (the rule is
``tests.fuzz.support.is_unhandled``).
"""
from __future__ import annotations

import asyncio
import json
import time
import warnings
from typing import Any

import aiohttp
import pytest
import socketio
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.support import FUZZ_SETTINGS, check, fuzz_stats, send, start_gateway


class Client:
    """A socket.io client that reconnects when the gateway dropped it (an oversized packet)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio: socketio.AsyncClient | None = None
        self.dropped = asyncio.Event()
        self.reconnects = 0

    async def ready(self) -> socketio.AsyncClient:
        if self.sio is None or not self.sio.connected:
            if self.sio is not None:
                self.reconnects += 1
                await self.sio.disconnect()
            self.sio = socketio.AsyncClient(reconnection=False)
            self.dropped = asyncio.Event()
            self.sio.on("disconnect", self.dropped.set)
            await self.sio.connect(self.url, socketio_path="socket.io", transports=["websocket"])
        return self.sio

    async def emit(self, event: str, payload: Any, ack: bool) -> None:
        """Send one event; with ``ack``, return once the gateway's handler has finished, or once
        the gateway dropped the socket (a packet over its size limit). A handler still busy
        after 30 s fails the test (socketio.exceptions.TimeoutError)."""
        sio = await self.ready()
        if not ack:
            await sio.emit(event, payload)
            return
        call = asyncio.ensure_future(sio.call(event, payload, timeout=30))
        dropped = asyncio.ensure_future(self.dropped.wait())
        await asyncio.wait({call, dropped}, return_when=asyncio.FIRST_COMPLETED)
        dropped.cancel()
        if call.done():
            call.result()
        else:
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)

    async def close(self) -> None:
        if self.sio is not None:
            await self.sio.disconnect()


@pytest.fixture(scope="module")
def web_gateway(loop_thread, module_env, redis_url, unhandled_log):
    from fakes.rasa_rest import FakeRasaRest

    rasa = FakeRasaRest()
    loop_thread.run(rasa.start())
    for key, value in {"REDIS_URL": redis_url, "RASA_URL": rasa.url, "WEBCHAT_RATE_PER_SESSION": "off",
                       "WEBCHAT_RATE_PER_ADDRESS": "off"}.items():
        module_env.setenv(key, value)
    gateway = loop_thread.run(start_gateway())
    gateway.client = Client(gateway.url)
    gateway.rasa = rasa
    yield gateway
    assert not unhandled_log.take(), "unhandled exception logged after the last input"
    loop_thread.run(gateway.client.close())
    if not loop_thread.run(closed_within(gateway, 15)):
        # Seen after raw packets (a socket.io disconnect packet, then the websocket closed):
        # reported, not hidden, while the rest of the suite goes on.
        warnings.warn("web chat gateway still shutting down after 15 s (sockets left by "
                      "malformed socket.io packets)", stacklevel=1)
    loop_thread.run(rasa.close())
    unhandled_log.take()


async def closed_within(gateway, seconds: float) -> bool:
    """Close the gateway; False when its shutdown did not finish within ``seconds``."""
    try:
        await asyncio.wait_for(gateway.close(), seconds)
        return True
    except asyncio.TimeoutError:
        return False


# --- strategies -------------------------------------------------------------------------------

SESSION_IDS = st.one_of(st.none(), fz.chars_from("0123456789abcdef", 32, 32), fz.nasty_text(70),
                        st.just("a" * 16 + "\n"), st.just("A" * 65), fz.json_values(3))
MESSAGES = st.one_of(fz.any_text(80), st.integers(), st.floats(), st.booleans(), st.none(),
                     fz.json_values(6), st.sampled_from(["１２３４５６７８９０", "3201234567", "/restart",
                                                          '/inform{"x":1}', "<b>电费</b>"]))
CUSTOM = st.one_of(fz.json_values(6), fz.nasty_text(40), st.just('{"a": 1}'), st.just("{bad json"),
                   st.builds(lambda n: {"k": "x" * n}, st.integers(0, 5000)))


def payloads(event: str) -> st.SearchStrategy[Any]:
    """Payloads of ``event``: the expected dict with fuzzed values, or anything else."""
    fields: dict[str, st.SearchStrategy[Any]] = {"session_id": SESSION_IDS}
    if event == "user_uttered":
        fields.update(message=MESSAGES, customData=CUSTOM, metadata=CUSTOM)
    shaped = st.builds(lambda known, extra: {**extra, **known},
                       st.fixed_dictionaries({}, optional=fields),
                       st.dictionaries(fz.nasty_text(10), fz.json_values(2), max_size=2))
    return st.one_of(shaped, shaped, fz.json_values(), fz.huge_text(), st.none())


def fuzz_event(gateway, loop_thread, unhandled_log, endpoint: str, event: str, payload: Any,
               ack: bool) -> None:
    stats = fuzz_stats(endpoint)
    started = time.monotonic()
    loop_thread.run(gateway.client.emit(event, payload, ack))
    stats.seconds += time.monotonic() - started
    stats.inputs += 1
    check(stats, unhandled_log, None, (event, repr(payload)[:300]))


# --- socket.io events -------------------------------------------------------------------------

@FUZZ_SETTINGS
@given(payload=payloads("session_request"))
def test_session_request_never_fails(web_gateway, loop_thread, unhandled_log, payload):
    fuzz_event(web_gateway, loop_thread, unhandled_log, "socket.io session_request",
               "session_request", payload, ack=True)


@FUZZ_SETTINGS
@given(payload=payloads("user_uttered"))
@example(payload={"message": "\ud800", "session_id": "f" * 32, "customData": {"\udfff": "\ud800"}})
@example(payload={"message": "x" * 300_000})
# Found by this fuzz: a lone surrogate in customData/metadata failed the JSON request to Rasa
# (UnicodeEncodeError in the router: a traceback and the busy reply).
@example(payload={"message": "你好", "metadata": {"\ud800": None}})
def test_user_uttered_never_fails(web_gateway, loop_thread, unhandled_log, payload):
    fuzz_event(web_gateway, loop_thread, unhandled_log, "socket.io user_uttered",
               "user_uttered", payload, ack=True)


EVENT_NAMES = st.one_of(st.sampled_from(["connect", "disconnect", "message", "bot_uttered",
                                         "session_confirm", "*", "", "user_uttered ", "USER_UTTERED"]),
                        fz.nasty_text(30))


@FUZZ_SETTINGS
@given(event=EVENT_NAMES, payload=payloads("user_uttered"))
# Found by this fuzz: a client's own "connect" event reached the connect handler (TypeError
# without a payload; with one, its payload posed as the environ).
@example(event="connect", payload=None)
@example(event="connect", payload={"REMOTE_ADDR": "6.6.6.6"})
def test_unknown_events_never_fail(web_gateway, loop_thread, unhandled_log, event, payload):
    # Unknown events get no acknowledgement: a session_request acknowledged after them shows the
    # socket processed them (one socket's events are handled in order).
    fuzz_event(web_gateway, loop_thread, unhandled_log, "socket.io other events", event, payload, ack=False)
    loop_thread.run(web_gateway.client.emit("session_request", {}, ack=True))
    check(fuzz_stats("socket.io other events"), unhandled_log, None, (event, repr(payload)[:300]))


def test_a_connect_event_cannot_forge_the_client_address(web_gateway, loop_thread):
    """Found by this fuzz: emitting "connect" with a fake environ replaced the socket's client
    address (the per-address limits' key, sent to Rasa as metadata) with any address."""
    async def forge_then_say() -> list[Any]:
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(web_gateway.url, socketio_path="socket.io", transports=["websocket"])
        await sio.call("session_request", {"session_id": "c0ffee" * 6}, timeout=10)
        await sio.emit("connect", {"REMOTE_ADDR": "6.6.6.6", "HTTP_X_FORWARDED_FOR": "6.6.6.6"})
        await sio.call("user_uttered", {"message": "你好", "session_id": "c0ffee" * 6}, timeout=10)
        await sio.disconnect()
        return [c["metadata"] for c in web_gateway.rasa.calls if c["sender"] == "web:" + "c0ffee" * 6]

    assert loop_thread.run(forge_then_say()) == [{"client_address": "127.0.0.1", "channel": "web"}]


# --- raw engine.io / socket.io packets --------------------------------------------------------

def raw_frames() -> st.SearchStrategy[str | bytes]:
    """engine.io packets carrying socket.io packets, mostly broken."""
    json_text = st.one_of(fz.json_values(6).map(json.dumps), fz.url_text(60),
                          st.builds(lambda e, p: json.dumps([e, p]), fz.url_text(15), fz.json_values(4)))
    prefix = st.sampled_from(["4", "40", "41", "42", "43", "44", "45", "46", "451-", "461-", "42/", "40/x,",
                              "42/chat,", "421", "4299999999999999999999", "0", "1", "2", "3", "5", "6", "9",
                              "b", ""])
    return st.one_of(
        st.builds(lambda p, j: p + j, prefix, json_text),
        st.builds(lambda j: "42" + j, json_text),
        fz.nasty_text(60).map(fz.without_surrogates),
        st.binary(max_size=200),
        fz.huge_text().map(lambda s: "42" + json.dumps(["user_uttered", {"message": s}])),
    )


async def raw_websocket(url: str, frames: list[str | bytes]) -> None:
    """Connect like a socket.io client, send ``frames``, then one well-formed event and wait
    briefly for its acknowledgement (none comes when the broken packets ended the socket.io
    session, e.g. a disconnect packet)."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", timeout=10) as ws:
            await ws.receive(timeout=10)          # engine.io open packet
            await ws.send_str("40")
            await ws.receive(timeout=10)          # socket.io connect
            for frame in frames:
                if ws.closed:
                    return
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            if ws.closed:
                return
            await ws.send_str('421["session_request",{}]')

            async def acknowledged() -> None:
                while not ws.closed:
                    message = await ws.receive()
                    if message.type != aiohttp.WSMsgType.TEXT or message.data.startswith("431"):
                        return
            try:
                await asyncio.wait_for(acknowledged(), 1)
            except asyncio.TimeoutError:
                return


@FUZZ_SETTINGS
@given(frames=st.lists(raw_frames(), min_size=1, max_size=3))
def test_raw_socketio_packets_never_fail(web_gateway, loop_thread, unhandled_log, frames):
    stats = fuzz_stats("engine.io websocket raw packets")
    started = time.monotonic()
    loop_thread.run(raw_websocket(web_gateway.url, frames))
    stats.seconds += time.monotonic() - started
    stats.inputs += 1
    check(stats, unhandled_log, None, [f[:200] for f in frames])


POLLING_QUERY = st.lists(st.tuples(
    st.sampled_from(["EIO", "transport", "sid", "t", "b64", "j", "x"]),
    st.one_of(st.sampled_from(["4", "3", "5", "polling", "websocket", "webtransport", "1", ""]),
              fz.url_text(30))), max_size=6)


@FUZZ_SETTINGS
@given(method=st.sampled_from(["GET", "POST", "OPTIONS", "PUT", "DELETE"]),
       query=st.one_of(POLLING_QUERY, POLLING_QUERY.map(lambda q: [("EIO", "4"), ("transport", "polling")] + q),
                       fz.raw_query()),
       body=st.one_of(st.none(), fz.binary_bodies(), raw_frames().map(lambda f: f if isinstance(f, bytes)
                                                                      else f.encode("utf-8", "surrogatepass"))),
       headers=fz.headers())
def test_engineio_polling_never_fails(web_gateway, loop_thread, unhandled_log, method, query, body, headers):
    stats = fuzz_stats("engine.io HTTP polling")
    started = time.monotonic()
    status = loop_thread.run(send(web_gateway, method, "/socket.io/", query, body, headers))
    stats.seconds += time.monotonic() - started
    check(stats, unhandled_log, status, (method, query, (body or b"")[:200], headers))

