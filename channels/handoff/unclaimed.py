"""The unclaimed-timeout watcher: one background task per gateway instance.

Every ``interval`` seconds it asks :meth:`HandoffService.remind_unclaimed` to tell customers who
have waited longer than ``HANDOFF_UNCLAIMED_MINUTES`` that they are still queued and may ask for
a callback. Every instance runs it; each hand-off's reminder fires once across instances (a
flag set with HSETNX on the hand-off's record).
"""
from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from channels.handoff import metrics
from channels.handoff.service import HandoffService

log = logging.getLogger(__name__)


async def watch_unclaimed(service: HandoffService, interval: float = 15.0) -> None:
    """Run :meth:`HandoffService.remind_unclaimed` forever, every ``interval`` seconds."""
    while True:
        try:
            await service.remind_unclaimed()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            log.warning("unclaimed hand-offs: pass failed (%s)", type(exc).__name__)
        except Exception:  # noqa: BLE001 - the watcher must outlive one bad pass
            log.exception("unclaimed hand-offs: pass failed")
            metrics.ERRORS.labels("unclaimed").inc()
        await asyncio.sleep(interval)
