"""Client garbage must not write tracebacks into the gateway's logs.

aiohttp logs a traceback at ERROR for HTTP it refuses itself (an over-long request line, a body
that does not decode as its ``Content-Encoding``), and python-engineio / python-socketio log one
for every malformed packet they drop. The client already got its 4xx or lost its socket, no
gateway code ran, and anyone on the internet can send such input in bulk: a traceback each would
flood the logs and hide real failures. :func:`install_client_error_filters` turns those records
into one WARNING line naming the exception; every other record passes unchanged.

It is a log-record factory, like the masking in :mod:`integrations.log_masking`, and must be
installed before the masking (which formats and drops ``exc_info`` as a record is made).
"""
from __future__ import annotations

import logging
import os

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

_AIOHTTP = "aiohttp.server"
_SOCKETIO = ("engineio.server", "socketio.server")
_LIBRARIES = (f"{os.sep}engineio{os.sep}", f"{os.sep}socketio{os.sep}")
_OURS = tuple(f"{os.sep}{name}{os.sep}" for name in ("channels", "integrations"))


def _aiohttp_client_error(exc: BaseException | None) -> bool:
    return isinstance(exc, RequestPayloadError) or (
        isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500)


def _raised_in_socketio_library(record: logging.LogRecord) -> bool:
    """True when, of the traceback's frames in the socket.io libraries or in our code, the
    innermost is a library frame (the library was parsing a packet, not running our handler)."""
    owner = None
    tb = record.exc_info[2] if record.exc_info else None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if any(part in filename for part in _LIBRARIES) and "site-packages" in filename:
            owner = "library"
        elif any(part in filename for part in _OURS) and "site-packages" not in filename:
            owner = "ours"
        tb = tb.tb_next
    return owner == "library"


def quiet_client_error(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` as one WARNING line without traceback when it is a library's traceback about a
    client's malformed input (see the module docstring); otherwise unchanged. Returns it."""
    if not record.exc_info or record.name not in (_AIOHTTP, *_SOCKETIO):
        return record
    exc = record.exc_info[1]
    # aiohttp also logs what the socket.io libraries raise while parsing a packet on a websocket
    # they hold (the exception leaves their handler through ours).
    if (record.name == _AIOHTTP and _aiohttp_client_error(exc)) or _raised_in_socketio_library(record):
        record.msg = "malformed client input refused (%s: %.200s)"
        record.args = (type(exc).__name__, str(exc))
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return record


_installed = False


def install_client_error_filters() -> None:
    """Make every log record pass through :func:`quiet_client_error` (idempotent; call it before
    :func:`integrations.log_masking.install_log_masking`)."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()

    def quiet_record(*args, **kwargs) -> logging.LogRecord:
        return quiet_client_error(make_record(*args, **kwargs))

    logging.setLogRecordFactory(quiet_record)
    _installed = True
