"""Optional live movement of the hall queues for demos (``--simulate-queues``).

Every tick, each open hall's counters finish numbers at their service rate and walk-in customers
take new numbers at about the same rate, so waiting counts and "my number" positions move as
they would in a real hall. Off by default: tests and the reference data stay deterministic.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import AsyncIterator

from aiohttp import web

from backends.catalog import BY_CODE
from backends.db import Clock, Database, iso
from backends.queue import _ensure_day, is_open

logger = logging.getLogger(__name__)


def _events(rng: random.Random, rate_per_minute: float, minutes: float) -> int:
    """How many events of a Poisson process happen in ``minutes`` (small counts, exact sampling)."""
    count, elapsed = 0, rng.expovariate(rate_per_minute) if rate_per_minute > 0 else minutes + 1
    while elapsed <= minutes:
        count += 1
        elapsed += rng.expovariate(rate_per_minute)
    return count


def step(db: Database, clock: Clock, elapsed_s: float, rng: random.Random) -> None:
    """Advance every open hall's lines by ``elapsed_s`` seconds of service and arrivals."""
    now = clock()
    minutes = elapsed_s / 60
    day = now.date().isoformat()
    for hall in db.query("SELECT * FROM halls"):
        if not is_open(hall, now):
            continue
        with db.transaction() as conn:
            _ensure_day(conn, hall, now.date(), now)
            for line in conn.execute("SELECT * FROM queue_lines WHERE hall_id = ? AND day = ?",
                                     (hall["hall_id"], day)).fetchall():
                bt = BY_CODE[line["business_type"]]
                service_rate = bt.windows / bt.avg_service_minutes
                served = min(line["issued"] + 1, line["served"] + _events(rng, service_rate, minutes))
                walk_ins = _events(rng, service_rate * rng.uniform(0.6, 1.1), minutes)
                if served != line["served"] or walk_ins:
                    conn.execute("UPDATE queue_lines SET served = ?, issued = issued + ?, updated_at = ?"
                                 " WHERE hall_id = ? AND day = ? AND business_type = ?",
                                 (served, walk_ins, iso(now), hall["hall_id"], day, bt.code))


def queue_simulation(db: Database, clock: Clock, interval_s: float):
    """A cleanup context running :func:`step` every ``interval_s`` seconds while the app runs."""

    @contextlib.asynccontextmanager
    async def run(app: web.Application) -> AsyncIterator[None]:
        rng = random.Random()

        async def loop() -> None:
            # Elapsed time is read from the backends' clock, not from the tick interval, so a
            # test (or a demo) that moves the clock moves the queues with it.
            last = clock()
            while True:
                await asyncio.sleep(interval_s)
                now = clock()
                elapsed_s, last = (now - last).total_seconds(), now
                if elapsed_s <= 0:
                    continue
                try:
                    step(db, clock, elapsed_s, rng)
                except Exception:  # noqa: BLE001 - a failed tick must not stop the simulation
                    logger.exception("queue simulation step failed")

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def context(app: web.Application):
        async with run(app):
            yield

    return context
