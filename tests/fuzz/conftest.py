"""Fixtures of the fuzz tests: the gateway's event-loop thread, the unhandled-exception log
collector, the module-long environment, and the terminal summary of inputs per endpoint."""
from __future__ import annotations

import logging
import os

import pytest

from tests.fuzz.support import FUZZ_EXAMPLES, STATS, LoopThread, UnhandledLog


def pytest_terminal_summary(terminalreporter) -> None:
    if not STATS:
        return
    terminalreporter.section(f"fuzz: inputs per endpoint (FUZZ_EXAMPLES={FUZZ_EXAMPLES})")
    for s in STATS.values():
        five_xx = sum(n for code, n in s.statuses.items() if code >= 500)
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(s.statuses.items())) or "no HTTP"
        terminalreporter.write_line(
            f"{s.endpoint}: {s.inputs} inputs, {five_xx} 5xx, {s.wall_seconds:.1f} s "
            f"({s.seconds:.1f} s in requests; {codes}; tracebacks logged by aiohttp for malformed "
            f"HTTP: {s.client_error_tracebacks}, by python-socketio/engineio for malformed "
            f"packets: {s.library_tracebacks})")


@pytest.fixture(scope="module")
def loop_thread():
    portal = LoopThread()
    yield portal
    portal.close()


@pytest.fixture(scope="module")
def unhandled_log():
    """The flagged-records collector on the root logger. The gateway's own loggers are raised
    to ERROR meanwhile: tens of thousands of rejected-request warnings are expected and would
    only slow the run down (records with a traceback are ERROR records, so none is lost)."""
    handler = UnhandledLog()
    root = logging.getLogger()
    root.addHandler(handler)
    quiet = [logging.getLogger(name) for name in ("channels", "integrations")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    yield handler
    for logger, level in zip(quiet, levels):
        logger.setLevel(level)
    root.removeHandler(handler)


@pytest.fixture(scope="module")
def module_env():
    """A MonkeyPatch for environment variables that lives as long as the module's gateway."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith(("WECHAT_", "SMS_", "ALIYUN_SMS",
                                                           "TENCENT_SMS", "GATEWAY_", "WEBCHAT_"))]:
            patch.delenv(key)
        yield patch
