"""The notice a conversation received last, and when the customer last wrote: two Redis keys.

- ``pd:notice:last:<conversation id>``: JSON ``{"kind", "params", "key", "at"}`` of the last
  non-transactional notice the Deliverer sent or queued to the conversation, kept
  ``NOTICE_CONTEXT_HOURS`` (72 by default). The router passes it to Rasa with every customer
  message as ``metadata["notice"]``, so actions answer "已经交了" / "什么时候来电" about THAT bill
  or outage (actions/notice_context.py).
- ``pd:seen:<conversation id>``: unix seconds (text) of the customer's last inbound message,
  kept 400 days; the broadcast audience reads it to prefer the channel used last.

Both are written and read off the failure path: a Redis error is logged and counted, never
raised, so a message or a delivery never fails because of its context.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from channels.messages import Notice
from channels.redis_text import redis_text

log = logging.getLogger(__name__)

NOTICE_PREFIX = "pd:notice:last:"
SEEN_PREFIX = "pd:seen:"
SEEN_TTL_SECONDS = 400 * 86400


def notice_key(conversation_id: str) -> str:
    return f"{NOTICE_PREFIX}{conversation_id}"


def seen_key(conversation_id: str) -> str:
    return f"{SEEN_PREFIX}{conversation_id}"


def encode_notice(notice: Notice, at: float) -> str:
    """The stored record of ``notice``, sent or queued at ``at`` (unix time)."""
    return json.dumps({"kind": notice.kind, "params": dict(notice.params), "key": notice.key,
                       "at": int(at)}, ensure_ascii=False, separators=(",", ":"))


def decode_notice(raw: Any) -> dict[str, Any] | None:
    """The record as metadata for Rasa, or None when absent or malformed."""
    if raw is None:
        return None
    try:
        record = json.loads(redis_text(raw))
    except (ValueError, TypeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
        return None
    params = record.get("params")
    return {"kind": record["kind"],
            "params": {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {},
            "key": str(record.get("key") or ""),
            "at": record.get("at") if isinstance(record.get("at"), (int, float)) else None}
