"""The reference backends process: five services under one aiohttp application.

``/billing``, ``/outage``, ``/queue``, ``/tickets`` and ``/applications`` are sub-applications
(each with its own ``/health``); the root serves ``/health`` and ``/openapi.yaml``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from aiohttp import web

from backends import applications, billing, outage, queue, tickets
from backends.db import Clock, Database, system_clock
from backends.seed import seed_if_empty
from backends.simulation import queue_simulation
from backends.web import json_errors, json_response

logger = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
SERVICES = {"billing": billing, "outage": outage, "queue": queue, "tickets": tickets,
            "applications": applications}


@dataclass(frozen=True)
class BackendsAppConfig:
    """Where the SQLite file is, the clock (tests pass a fixed one), and whether the hall queues
    move by themselves (seconds between simulation ticks; None = only on requests)."""

    db_path: Path
    clock: Clock = field(default=system_clock)
    simulate_queues_every_s: Optional[float] = None


def create_app(config: BackendsAppConfig) -> web.Application:
    """The whole reference backends application; the database is opened (and seeded if empty)
    on startup and closed on cleanup."""
    db = Database(config.db_path)
    if seed_if_empty(db):
        logger.info("seeded reference data into %s", config.db_path)
    app = web.Application(middlewares=[json_errors])

    async def close_db(_: web.Application) -> None:
        db.close()

    app.on_cleanup.append(close_db)
    if config.simulate_queues_every_s:
        app.cleanup_ctx.append(queue_simulation(db, config.clock, config.simulate_queues_every_s))

    async def health(request: web.Request) -> web.Response:
        return json_response({"status": "ok", "services": sorted(SERVICES)})

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=OPENAPI_PATH.read_text(encoding="utf-8"),
                            content_type="application/yaml", charset="utf-8")

    app.router.add_get("/health", health)
    app.router.add_get("/openapi.yaml", openapi)
    for prefix, module in SERVICES.items():
        app.add_subapp(f"/{prefix}", module.create_app(db, config.clock))
    return app
