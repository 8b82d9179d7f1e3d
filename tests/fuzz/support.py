"""Machinery of the inbound-endpoint fuzz tests (see ``tests/fuzz/__init__.py``).

The gateway under test runs in-process, on loopback, in an event loop of its own thread
(:class:`LoopThread`); the Hypothesis tests are plain functions that hand coroutines to that
loop. One gateway serves every example of a test, so its state (Redis, queues, limits) is what
the whole stream of inputs left behind, as it would be in production.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

# Examples per endpoint: small in `make test`, 10,000 in `make fuzz`.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,            # examples include 1 MiB bodies and real network round trips
    derandomize=True,         # the same inputs on every run and machine (reproducible CI)
    database=None,            # nothing written into the working tree
    print_blob=True,
    # One gateway serves every example on purpose; huge and filtered inputs are the point.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example,
                           HealthCheck.filter_too_much],
)

# Loggers of aiohttp's request handling: any ERROR there is an exception our handler let escape.
AIOHTTP_REQUEST_LOGGERS = ("aiohttp.server", "aiohttp.web_protocol", "aiohttp.web")


class LoopThread:
    """An asyncio event loop running in a daemon thread; :meth:`run` executes a coroutine in
    it and returns its result (or raises its exception) in the calling thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-gateway",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def is_client_error_traceback(record: logging.LogRecord) -> bool:
    """aiohttp's own traceback for a client's malformed HTTP: a request its parser refused (an
    over-long request line or header: answered 400 before any gateway code runs), or a body it
    could not decode (``Content-Encoding: gzip`` over plain bytes) when it reads the rest of an
    answered request's body itself. aiohttp logs both at ERROR with a traceback; the client got
    its 4xx. Counted apart (reported in the summary, see the README), not as a failure."""
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    exc = record.exc_info[1] if record.exc_info else None
    if record.name != "aiohttp.server":
        return False
    return isinstance(exc, RequestPayloadError) or (
        isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500)


SOCKETIO_LIBRARIES = (f"{os.sep}engineio{os.sep}", f"{os.sep}socketio{os.sep}")
OUR_CODE = tuple(f"{os.sep}{name}{os.sep}" for name in ("channels", "integrations"))


def is_socketio_library_traceback(record: logging.LogRecord) -> bool:
    """A traceback raised inside python-engineio or python-socketio while they parse a malformed
    packet: of its frames in those libraries or in our code (``channels/``, ``integrations/``),
    the innermost is a library frame, so no gateway code was running (our middlewares may be
    further out). The libraries log it at ERROR and drop the packet or the socket. Counted apart
    (reported in the summary, see the README), not as a failure."""
    if not record.exc_info or record.exc_info[2] is None:
        return False
    owner = None
    tb = record.exc_info[2]
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if "site-packages" in filename and any(part in filename for part in SOCKETIO_LIBRARIES):
            owner = "library"
        elif "site-packages" not in filename and any(part in filename for part in OUR_CODE):
            owner = "ours"
        tb = tb.tb_next
    return owner == "library"


def is_unhandled(record: logging.LogRecord) -> bool:
    """The fuzz suite's rule for "an unhandled exception was logged": a record that carries a
    traceback (``exc_info`` or ``stack_info``, at any level, from any logger: our own
    ``log.exception`` catch-alls included, as they mean an input reached an unexpected failure),
    any ERROR record of aiohttp's request handling, or any message mentioning "Error handling
    request" or "Traceback"; except aiohttp's tracebacks of a client's malformed HTTP
    (:func:`is_client_error_traceback`) and the socket.io libraries' tracebacks of a malformed
    packet (:func:`is_socketio_library_traceback`).
    Deliberate log lines without a traceback (a rejected request's warning, a Redis-unavailable
    error line) are not counted."""
    if is_client_error_traceback(record) or is_socketio_library_traceback(record):
        return False
    if record.exc_info or record.exc_text or record.stack_info:
        return True
    if record.name.startswith(AIOHTTP_REQUEST_LOGGERS) and record.levelno >= logging.ERROR:
        return True
    message = record.getMessage()
    return "Error handling request" in message or "Traceback" in message


class UnhandledLog(logging.Handler):
    """Collects the records :func:`is_unhandled` flags, from every thread."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.client_error_tracebacks = 0
        self.library_tracebacks = 0
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if is_client_error_traceback(record):
            self.client_error_tracebacks += 1
        elif is_socketio_library_traceback(record):
            self.library_tracebacks += 1
        elif is_unhandled(record):
            with self._lock_records:
                self.records.append(record)

    def take_client_error_tracebacks(self) -> int:
        """aiohttp's client-error tracebacks since the last call."""
        with self._lock_records:
            count, self.client_error_tracebacks = self.client_error_tracebacks, 0
        return count

    def take_library_tracebacks(self) -> int:
        """socket.io libraries' tracebacks since the last call."""
        with self._lock_records:
            count, self.library_tracebacks = self.library_tracebacks, 0
        return count

    def take(self) -> list[str]:
        """The flagged records since the last call, formatted with their tracebacks."""
        with self._lock_records:
            records, self.records = self.records, []
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [formatter.format(r) for r in records]


@dataclass
class FuzzStats:
    """Inputs sent per endpoint, status classes seen, time taken: printed after the run."""

    endpoint: str
    inputs: int = 0
    client_error_tracebacks: int = 0
    library_tracebacks: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    seconds: float = 0.0      # waiting for the gateway (the rest is Hypothesis generating)

    @property
    def wall_seconds(self) -> float:
        return max(0.0, self.finished - self.started)

    def saw(self, status: int) -> None:
        self.inputs += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1


STATS: dict[str, FuzzStats] = {}


def fuzz_stats(endpoint: str) -> FuzzStats:
    """The statistics record of ``endpoint`` (created on first use), reported in the terminal
    summary."""
    if endpoint not in STATS:
        STATS[endpoint] = FuzzStats(endpoint)
    return STATS[endpoint]


PROGRESS_FILE = os.environ.get("FUZZ_PROGRESS", "")  # long runs: a line every 1,000 inputs


def report_progress(stats: FuzzStats) -> None:
    if PROGRESS_FILE and stats.inputs % 1000 == 0:
        five_xx = sum(n for code, n in stats.statuses.items() if code >= 500)
        with open(PROGRESS_FILE, "a", encoding="utf-8") as out:
            out.write(f"{time.strftime('%H:%M:%S')} {stats.endpoint}: {stats.inputs} inputs, {five_xx} 5xx, "
                      f"{stats.wall_seconds:.0f} s\n")


def check(stats: FuzzStats, unhandled: UnhandledLog, status: int | None, what: Any) -> None:
    """Count one input and fail on a 5xx answer or a flagged log record."""
    stats.client_error_tracebacks += unhandled.take_client_error_tracebacks()
    stats.library_tracebacks += unhandled.take_library_tracebacks()
    if status is not None:
        stats.saw(status)
        assert status < 500, f"{status} for {what!r}"
    stats.finished = time.monotonic()
    report_progress(stats)
    flagged = unhandled.take()
    assert not flagged, f"unhandled exception logged for {what!r}:\n" + "\n".join(flagged)


@dataclass
class RunningGateway:
    """A gateway app built by the product's own factory, served on loopback, and a client."""

    url: str
    app: Any
    server: Any
    session: Any

    async def close(self) -> None:
        await self.session.close()
        await self.server.close()


async def start_gateway() -> RunningGateway:
    """``create_app(GatewayConfig.from_env())`` on loopback, configured by the process
    environment (set it with the ``module_env`` fixture: the channels read it too)."""
    import aiohttp
    from aiohttp.test_utils import TestServer

    from channels.app import create_app
    from channels.config import GatewayConfig

    app = create_app(GatewayConfig.from_env())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    # No pooling quirks between examples: one connection per request, closed afterwards.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                    timeout=aiohttp.ClientTimeout(total=30))
    return RunningGateway(str(server.make_url("")).rstrip("/"), app, server, session)


async def send(gateway: RunningGateway, method: str, path: str, query: Any, body: bytes | None,
               headers: dict[str, str]) -> int:
    """One HTTP request as generated; the response status. ``query`` is a list of pairs (any
    order, repeats allowed) or an already percent-encoded query string sent as it is."""
    from yarl import URL

    if isinstance(query, str):
        url = URL(f"{gateway.url}{path}?{query}", encoded=True)
    else:
        url = URL(f"{gateway.url}{path}").with_query(query)
    async with gateway.session.request(method, url, data=body, headers=headers) as response:
        await response.read()
        return response.status
