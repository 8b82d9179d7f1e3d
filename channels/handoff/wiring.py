"""The hand-off in the gateway app: :func:`setup` (called by :func:`channels.app.create_app`).

Once the app starts it builds the store, the tickets client (callback tickets) and the
:class:`~channels.handoff.service.HandoffService` (``app[HANDOFF_KEY]``, set before the app
serves), hooks the service into the router (a handed-off conversation's messages go to its
agent, not to Rasa) and runs this instance's consumer of ``pd:handoff:requests`` and its
unclaimed-timeout watcher.
"""
from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

from aiohttp import web

from channels.delivery import deliver_via
from channels.handoff.config import HandoffConfig
from channels.handoff.requests import HandoffRequests
from channels.handoff.service import HandoffService
from channels.handoff.store import HandoffStore
from channels.handoff.unclaimed import watch_unclaimed
from channels.key_migration import migrate_at_start
from channels.keys import HANDOFF_KEY, RASA_KEY, REDIS_KEY, ROUTER_KEY
from integrations.customer_store import CustomerStore
from integrations.tickets import HttpTicketsClient


def setup(app: web.Application, config: HandoffConfig, timezone: str = "Asia/Shanghai") -> None:
    """Add the hand-off's cleanup context to ``app``; call after ``setup_delivery``."""

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        redis = app[REDIS_KEY]
        tickets = HttpTicketsClient(config.tickets_url, config.backend_timeout_seconds)
        store = HandoffStore(redis, tz=ZoneInfo(timezone))
        await migrate_at_start("hand-off", store.migrate_legacy_keys())
        service = HandoffService(store, deliver_via(app), app[RASA_KEY], config, tickets, CustomerStore(redis))
        app[HANDOFF_KEY] = service
        app[ROUTER_KEY].handoff = service
        consumer = HandoffRequests(redis, service, f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                                   group=config.group, claim_idle_seconds=config.claim_idle_seconds)
        tasks = [asyncio.create_task(consumer.run_forever()),
                 asyncio.create_task(watch_unclaimed(service, config.unclaimed_check_seconds))]
        try:
            yield
        finally:
            app[ROUTER_KEY].handoff = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await consumer.leave()
            await tickets.close()

    app.cleanup_ctx.append(lifespan)
