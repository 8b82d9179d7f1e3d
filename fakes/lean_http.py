"""A lean HTTP/1.1 server for a loopback fake's aiohttp handlers, for benchmarks.

aiohttp's web server costs a fake a few hundred microseconds of CPU per request (middlewares,
routing, request and response objects, access log plumbing): at a broadcast's thousands of
WeChat template messages per second the fake would take a good share of the machine the
benchmark measures. This server keeps the fake's handlers (and so its protocol checks) and
replaces only the transport: one :class:`asyncio.Protocol` per keep-alive connection, requests
with a ``Content-Length`` body (what aiohttp's client sends for bytes), answered in order.

Handlers get a small request object with what the fakes read — ``method``, ``path``, ``query``
(a dict of the first values), ``headers`` (lower-case names), ``await read()`` and ``await
json()`` — and return an ``aiohttp.web.Response`` whose ``body`` is bytes (``json_response``).
Anything else (chunked bodies, a bad request line, an unknown route) is answered 400/404/411
and the connection closed.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

Handler = Callable[[Any], Awaitable[web.Response]]
MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024


class LeanRequest:
    """The parts of ``aiohttp.web.Request`` the fakes use."""

    __slots__ = ("method", "path", "query", "headers", "_body")

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path
        self.query = dict(parse_qsl(parts.query, keep_blank_values=True)[::-1])  # first wins
        self.headers = headers
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def json(self) -> Any:
        return json.loads(self._body)


def _response(status: int, body: bytes, content_type: str, close: bool) -> bytes:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode("latin-1") + body


class _Connection(asyncio.Protocol):
    def __init__(self, routes: Mapping[tuple[str, str], Handler], tasks: set[asyncio.Task]) -> None:
        self._routes = routes
        self._tasks = tasks
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False  # a request is being answered: the next waits in the buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next()

    def _fail(self, status: int) -> None:
        if self._transport is not None:
            self._transport.write(_response(status, b"", "text/plain", close=True))
            self._transport.close()
        self._buffer.clear()

    def _next(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self._fail(431)
            return
        try:
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400)
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(411)
            return
        if not 0 <= length <= MAX_BODY:
            self._fail(413)
            return
        if len(self._buffer) < end + 4 + length:
            return  # the body is still coming
        body = bytes(self._buffer[end + 4:end + 4 + length])
        del self._buffer[:end + 4 + length]
        close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        request = LeanRequest(method, target, headers, body)
        handler = self._routes.get((method, request.path))
        if handler is None:
            self._answer(_response(404, b"", "text/plain", close), close)
            return
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._handle(handler, request, close))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, handler: Handler, request: LeanRequest, close: bool) -> None:
        try:
            response = await handler(request)
            body = response.body if isinstance(response.body, bytes) else b""
            content_type = response.content_type + (f"; charset={response.charset}"
                                                     if response.charset else "")
            data = _response(response.status, body, content_type, close)
        except Exception:  # noqa: BLE001 - a fake's bug answers 500, as aiohttp would
            data = _response(500, b"", "text/plain", True)
            close = True
        self._busy = False
        self._answer(data, close)

    def _answer(self, data: bytes, close: bool) -> None:
        if self._transport is None:
            return
        self._transport.write(data)
        if close:
            self._transport.close()
            self._buffer.clear()
        elif self._buffer:
            self._next()


class LeanServer:
    """Serves ``routes`` ({(method, path): handler}) on a free loopback port."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler]) -> None:
        self._routes = dict(routes)
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.base_events.Server | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1") -> str:
        """Start serving; returns the base URL."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self._routes, self._tasks),
                                                host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
