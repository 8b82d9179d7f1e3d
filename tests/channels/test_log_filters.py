"""A client's malformed HTTP or socket.io packets log one line, not a traceback."""
from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels import log_filters
from channels.log_filters import install_client_error_filters, quiet_client_error
from integrations import log_masking
from integrations.log_masking import install_log_masking


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record(name: str, exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        import sys

        return logging.LogRecord(name, logging.ERROR, __file__, 1, "Error handling request", (),
                                 sys.exc_info())


def test_aiohttp_client_errors_become_one_warning_line():
    from aiohttp.http_exceptions import LineTooLong

    record = quiet_client_error(_record("aiohttp.server", LineTooLong(b"x" * 9000, 8190)))
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("malformed client input refused (LineTooLong")


def test_a_malformed_packet_raised_inside_engineio_becomes_one_warning_line():
    from engineio.packet import Packet

    try:
        Packet(encoded_packet="")  # what a client's empty websocket frame makes engine.io do
    except ValueError as exc:
        # aiohttp logs it: the exception left engine.io's websocket handler through ours
        record = quiet_client_error(_record("aiohttp.server", exc))
    assert record.levelno == logging.WARNING and record.exc_info is None


def test_our_own_failures_keep_their_traceback():
    record = quiet_client_error(_record("aiohttp.server", ZeroDivisionError("bug")))
    assert record.levelno == logging.ERROR and record.exc_info is not None
    record = quiet_client_error(_record("channels.router", ValueError("bad")))
    assert record.levelno == logging.ERROR and record.exc_info is not None


@pytest.fixture
def process_logging(monkeypatch):
    """The record factories as ``python -m channels`` installs them, undone afterwards (the
    masking would otherwise format every later test's tracebacks away)."""
    factory = logging.getLogRecordFactory()
    monkeypatch.setattr(log_filters, "_installed", False)
    monkeypatch.setattr(log_masking, "_installed", False)
    install_client_error_filters()
    install_log_masking()  # after, as in python -m channels; it must not undo the filter
    yield
    logging.setLogRecordFactory(factory)


async def test_an_over_long_request_line_logs_no_traceback_even_with_masking(process_logging):
    handler = Records()
    logging.getLogger("aiohttp.server").addHandler(handler)
    app = web.Application()
    async def ok(_request):
        return web.Response(text="ok")

    app.router.add_get("/", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert b" 400 " in status
        for _ in range(50):
            if handler.records:
                break
            await asyncio.sleep(0.02)
    finally:
        logging.getLogger("aiohttp.server").removeHandler(handler)
        await server.close()
    assert handler.records, "aiohttp logged nothing about the refused request"
    assert all(r.exc_info is None and not r.exc_text for r in handler.records)
    assert all(r.levelno == logging.WARNING for r in handler.records)
