"""The broadcast scheduler: plans each kind's campaigns on its schedule and finishes every
unfinished campaign; ``python -m channels.broadcast scheduler`` (started by ``make run``).

Safe in any number of copies: each schedule slot (a day for ``HH:MM`` schedules, a period for
``*/N`` ones) fires in one copy only, the one that sets ``pd:bc:schedule:<kind>:<slot>`` first
(``SET NX``, kept two slots long). Firing asks the sources for the kind's plans (deterministic
campaign ids: a plan fired twice is the same campaign) and starts them. Every tick each copy
also works on the campaigns that are not done (all copies may: the consumer group gives each
recipient to one worker), which resumes held recipients when due, takes over the recipients of
a worker that died, and reads again the audience of a campaign whose planning stopped midway.
It also follows the delivery reports (``pd:notice:reports``).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from channels.broadcast.config import EngineConfig, Slot
from channels.broadcast.engine import Engine, ReportConsumer

log = logging.getLogger(__name__)

MARKER_KEY = "pd:bc:schedule:{}:{}"


def slot_id(slot: Slot, now: float, tz: ZoneInfo) -> tuple[str, int] | None:
    """(the id of the slot ``now`` falls in, seconds to keep its marker), None when the kind
    is not due yet today (a daily schedule before its time)."""
    if slot.every is not None:
        return str(int(now // slot.every)), 2 * slot.every
    local = datetime.fromtimestamp(now, tz)
    if slot.daily is None or (local.hour, local.minute) < slot.daily:
        return None
    return local.date().isoformat(), 2 * 86400


class Scheduler:
    """One scheduler copy (see the module docstring)."""

    def __init__(self, engine: Engine, sources: Any, config: EngineConfig, timezone: str, *,
                 plan_of: Callable[[dict[str, str]], Any] | None = None,
                 clock: Callable[[], float] = time.time, owner: str | None = None) -> None:
        """``plan_of`` rebuilds a campaign's plan from its stored fields (to read its
        audience again); by default :func:`channels.broadcast.campaigns.plan_from_meta`."""
        self.engine = engine
        self.sources = sources
        self.config = config
        self.tz = ZoneInfo(timezone)
        self.clock = clock
        self.owner = owner or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if plan_of is None:
            from channels.broadcast.campaigns import plan_from_meta as plan_of
        self._plan_of = plan_of
        self._tasks: dict[str, asyncio.Task] = {}

    async def fire_due(self) -> list[str]:
        """Fire the slots that are due and not fired by any copy; returns the campaign ids
        started."""
        started: list[str] = []
        now = self.clock()
        for slot in self.config.schedule:
            due = slot_id(slot, now, self.tz)
            if due is None:
                continue
            marker, ttl = MARKER_KEY.format(slot.kind, due[0]), due[1]
            if not await self.engine.redis.set(marker, self.owner, nx=True, ex=ttl):
                continue
            try:
                plans = await self.sources.plans(slot.kind,
                                                 now=datetime.fromtimestamp(now, self.tz))
            except Exception:
                await self.engine.redis.delete(marker)  # the slot fires again at the next tick
                raise
            log.info("schedule %s (%s): %d campaigns", slot.kind, due[0], len(plans))
            for plan in plans:
                await self.engine.open(plan)
                self._start(plan.campaign_id, plan)
                started.append(plan.campaign_id)
        return started

    async def resume(self) -> list[str]:
        """Start working on every unfinished campaign this copy is not working on."""
        resumed = []
        for campaign_id in await self.engine.campaigns.unfinished():
            if campaign_id not in self._tasks:
                self._start(campaign_id, None)
                resumed.append(campaign_id)
        return resumed

    def _start(self, campaign_id: str, plan: Any | None) -> None:
        if campaign_id in self._tasks:
            return
        task = asyncio.create_task(self._drive(campaign_id, plan))
        self._tasks[campaign_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(campaign_id, None))

    async def _drive(self, campaign_id: str, plan: Any | None) -> str | None:
        """Plan (if needed) and work on one campaign until it is done or only waits."""
        planning = None
        try:
            meta = await self.engine.campaigns.meta(campaign_id)
            if meta is None:
                return None
            if meta.get("planned") != "1" and not await self.engine.planner_active(campaign_id):
                plan = plan or self._plan_of(meta)
                planning = asyncio.create_task(self.engine.plan_audience(plan, self.sources))
            status = await self.engine.work(campaign_id, planning=planning)
            if planning is not None:
                await planning
            log.info("campaign %s: %s", campaign_id, status)
            return status
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one campaign's failure must not stop the others
            log.exception("campaign %s: worker stopped; resumed at the next tick", campaign_id)
            return None
        finally:
            if planning is not None and not planning.done():
                planning.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await planning

    async def tick(self) -> None:
        """Fire what is due, then resume the unfinished campaigns."""
        try:
            await self.fire_due()
            await self.resume()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            log.warning("broadcast scheduler: Redis failed (%s)", type(exc).__name__)
        except Exception:  # noqa: BLE001 - a backend failure must not end the scheduler
            log.exception("broadcast scheduler: tick failed")

    async def wait_idle(self) -> None:
        """Wait until this copy works on no campaign (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Tick every BROADCAST_SCHEDULER_TICK_SECONDS and follow the delivery reports until
        ``stop`` is set; then stop the campaigns in progress (another copy, or this one when
        it starts again, takes over their recipients)."""
        reports = ReportConsumer(self.engine.redis, self.config.failures_kept, self.owner)
        follower = asyncio.create_task(reports.run_forever(stop))
        log.info("broadcast scheduler %s started: %s", self.owner,
                 ", ".join(f"{s.kind}={_describe(s)}" for s in self.config.schedule) or "no schedule")
        try:
            while not stop.is_set():
                await self.tick()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.tick_seconds)
        finally:
            tasks = [follower, *self._tasks.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("broadcast scheduler %s stopped", self.owner)


def _describe(slot: Slot) -> str:
    if slot.daily is not None:
        return f"{slot.daily[0]:02d}:{slot.daily[1]:02d}"
    every = slot.every or 0
    return f"*/{every // 3600}h" if every % 3600 == 0 else f"*/{every // 60}m"
