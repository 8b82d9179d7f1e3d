"""Stricter budgets for the actions that create something: hall queue numbers, repair tickets and
complaints, each kind on its own budget.

A web chat session costs nothing to make, so one script with fresh sessions could take every
queue number or file fake urgent repairs: the budget is per conversation and per client address
(the gateway's metadata ``client_address``; WeChat and SMS conversations have none and only the
per-conversation budget). Token buckets in Redis (:mod:`integrations.rate_limit`), shared by
every action server; settings in :class:`actions.settings.CreationLimits`.

A refused creation creates nothing, answers politely with the hotline and logs one masked line
(no conversation id: web session ids are bearer secrets). A Redis failure allows the creation
(logged by the limiter): a real repair ticket must not be lost to a limiter outage.
"""
from __future__ import annotations

import logging
from typing import Optional

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.common import Services, client_address, conversation_id
from actions.constants import HOTLINE
from actions.settings import CreationLimits
from integrations.rate_limit import Bucket, Rate, TokenBuckets
from integrations.redis_url import async_client

logger = logging.getLogger(__name__)

QUEUE_NUMBER, REPAIR_TICKET, COMPLAINT = "queue_number", "repair_ticket", "complaint"
_WHAT = {QUEUE_NUMBER: "在线取号", REPAIR_TICKET: "提交报修", COMPLAINT: "提交投诉"}
REFUSED_TEXT = ("抱歉，您{what}过于频繁，暂时无法受理，请稍后再试。"
                f"如有紧急情况（如电线断落、冒火花、大面积停电），请立即拨打{HOTLINE}供电服务热线。")

_limiter: Optional[tuple[TokenBuckets, CreationLimits]] = None


def _buckets_and_limits(services: Services) -> tuple[TokenBuckets, CreationLimits]:
    """The process-wide limiter and its settings, built on first use."""
    global _limiter
    if _limiter is None:
        redis = async_client(services.config.redis_url, socket_timeout=5, socket_connect_timeout=5)
        _limiter = (TokenBuckets(redis, "create"), CreationLimits.from_env())
    return _limiter


async def creation_allowed(kind: str, dispatcher: CollectingDispatcher, tracker: Tracker,
                           services: Services) -> bool:
    """Take one ``kind`` creation from the conversation's and the address's hourly budgets.
    False (after the polite refusal) when one of them is spent: create nothing then."""
    buckets, limits = _buckets_and_limits(services)
    wanted = [Bucket(f"{kind}:conversation:{conversation_id(tracker)}",
                     Rate(limits.per_conversation, 3600))]
    address = client_address(tracker)  # IPv4, or an IPv6 /64
    if address:
        wanted.append(Bucket(f"{kind}:address:{address}", Rate(limits.per_address, 3600)))
    verdict = await buckets.take(wanted)
    if verdict.allowed:
        return True
    logger.warning("refused a new %s: the %s budget is spent (address %s; allowed again in %.0f s)",
                   kind, verdict.refused_by.split(":")[1], address or "none", verdict.retry_after)
    dispatcher.utter_message(text=REFUSED_TEXT.format(what=_WHAT[kind]))
    return False
