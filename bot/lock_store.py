"""PowerDesk's Redis lock store: Rasa's ticket locks on any REDIS_URL, hash-tagged per conversation.

Rasa's stock ``RedisLockStore`` connects only to one server by host and port (no Sentinel, no
Cluster, no REDIS_URL) and keeps a lock forever when the Rasa process holding it dies. This
subclass keeps Rasa's ticket-lock logic and changes only where a lock lives:

    <prefix>:lock:{<tag>}    the conversation's TicketLock as JSON (Rasa's own format)

``<tag>`` is the conversation's Cluster hash tag (bot/tracker_store.hash_tag), so a lock sits on
the same slot as the conversation's tracker. Each save sets an expiry a minute past the lock's
last ticket, so a lock left by a killed Rasa node disappears by itself.

Configured in bot/endpoints.yml: ``type: bot.lock_store.PowerDeskLockStore``, ``url``: a
REDIS_URL (redis://, rediss://, unix://, redis+sentinel://, redis+cluster://: see
integrations/redis_url.py) and ``key_prefix``.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Optional

from rasa.core.lock import TicketLock
from rasa.core.lock_store import DEFAULT_SOCKET_TIMEOUT_IN_SECONDS, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

from bot.tracker_store import DEFAULT_PREFIX, hash_tag, store_client

# Seconds a lock outlives its last ticket's expiry (tickets past it are dropped by Rasa anyway).
EXPIRY_MARGIN_SECONDS = 60


class PowerDeskLockStore(RedisLockStore):
    """Rasa's Redis ticket locks through integrations/redis_url.py, one hash-tagged key each."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, url: Optional[str] = None,
                 key_prefix: Optional[str] = None, redis_client: Any = None,
                 socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_IN_SECONDS) -> None:
        """Rasa passes ``endpoint_config`` (``url`` = a REDIS_URL, ``key_prefix``); ``url`` and
        ``key_prefix`` may be given directly, ``redis_client`` replaces the URL (tests)."""
        if endpoint_config is not None:
            url = url or endpoint_config.url
            key_prefix = key_prefix or endpoint_config.kwargs.get("key_prefix")
            socket_timeout = float(endpoint_config.kwargs.get("socket_timeout", socket_timeout))
        if redis_client is None:
            redis_client = store_client(url, socket_timeout, "PowerDeskLockStore")
        self.red = redis_client
        self.prefix = str(key_prefix or DEFAULT_PREFIX)
        self.key_prefix = f"{self.prefix}:lock:"  # what the stock store's debug helpers read

    def key_of(self, conversation_id: str) -> str:
        """The Redis key of the conversation's lock (same hash slot as its tracker)."""
        return f"{self.prefix}:lock:{{{hash_tag(conversation_id)}}}"

    def get_lock(self, conversation_id: str) -> Optional[TicketLock]:
        """The conversation's lock, or None."""
        serialised = self.red.get(self.key_of(conversation_id))
        return TicketLock.from_dict(json.loads(serialised)) if serialised else None

    def delete_lock(self, conversation_id: str) -> None:
        """Deletes the conversation's lock."""
        self._log_deletion(conversation_id, bool(self.red.delete(self.key_of(conversation_id))))

    def save_lock(self, lock: TicketLock) -> None:
        """Stores ``lock``, expiring a minute after its last ticket."""
        last = max((t.expires for t in lock.tickets), default=time.time())
        ttl = max(1, math.ceil(last - time.time())) + EXPIRY_MARGIN_SECONDS
        self.red.set(self.key_of(lock.conversation_id), lock.dumps(), ex=ttl)

