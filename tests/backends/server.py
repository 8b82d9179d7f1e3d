"""Run the reference backends in-process on a free loopback port, with a settable clock."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import AsyncIterator

from aiohttp import web

from backends.app import BackendsAppConfig, create_app
from backends.db import LOCAL_TZ
from integrations.clients import BackendClients
from integrations.config import BackendsConfig
from tests.support.ports import free_port

# A Monday morning: every hall with weekday hours is open.
MONDAY_MORNING = datetime(2026, 11, 23, 10, 30, tzinfo=LOCAL_TZ)


class SettableClock:
    """The backends' clock; tests move it to see halls close or bills fall due."""

    def __init__(self, now: datetime = MONDAY_MORNING) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RunningBackends:
    url: str
    db_path: Path
    clock: SettableClock
    clients: BackendClients


@contextlib.asynccontextmanager
async def running_backends(db_path: Path, now: datetime = MONDAY_MORNING,
                           timeout_s: float = 3.0) -> AsyncIterator[RunningBackends]:
    """The whole backends app served over real HTTP, and real clients pointed at it."""
    clock = SettableClock(now)
    runner = web.AppRunner(create_app(BackendsAppConfig(db_path=db_path, clock=clock)))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    url = f"http://127.0.0.1:{port}"
    clients = BackendClients.from_config(BackendsConfig.for_base_url(url, timeout_s))
    try:
        yield RunningBackends(url, db_path, clock, clients)
    finally:
        await clients.close()
        await runner.cleanup()
