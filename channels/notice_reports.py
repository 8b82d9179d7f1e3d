"""Delivery reports of keyed notices, for the broadcast engine: the stream ``pd:notice:reports``.

A notice with an idempotency key (:attr:`channels.messages.Notice.key`, a broadcast's
``bc:<campaign>:<customer>``) may be confirmed or refused by its provider after it was sent:
SMS status reports (Aliyun SmsReport, Tencent 短信回执, or the provider's query API during
reconciliation) and WeChat's ``TEMPLATESENDJOBFINISH`` event. Each becomes one entry
``{key, channel, status, code}`` (``status`` ``delivered`` or ``undelivered``; ``code`` the
provider's, e.g. ``DELIVERED``, ``user_block``) appended here, capped at about
``REPORTS_MAXLEN`` entries. Providers push reports again and again; a report may therefore be
appended more than once, and the consumer applies them idempotently (the last one per key wins).
"""
from __future__ import annotations

from typing import Any

REPORTS_STREAM = "pd:notice:reports"
REPORTS_MAXLEN = 1_000_000


async def append_report(redis: Any, key: str, channel: str, delivered: bool, code: str,
                        stream: str = REPORTS_STREAM) -> str | None:
    """Append one report of the notice ``key`` on ``channel``; returns the entry id (None for an
    unkeyed notice, which nobody tracks)."""
    if not key:
        return None
    entry = await redis.xadd(stream, {"key": key, "channel": channel,
                                      "status": "delivered" if delivered else "undelivered",
                                      "code": code[:64]},
                             maxlen=REPORTS_MAXLEN, approximate=True)
    return entry.decode() if isinstance(entry, bytes) else entry
