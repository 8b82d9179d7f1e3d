"""A pool of Rasa nodes behind one gateway (RASA_URL with several comma-separated URLs).

- **Affinity.** A conversation goes to the live node with the highest rendezvous
  (highest-random-weight) score of ``(node URL, conversation id)``: it keeps one warm node, and
  when a node dies only that node's conversations move (each to its own next-best node).
- **Health.** A background task probes every node (Rasa's ``GET /``) every
  RASA_HEALTH_INTERVAL_SECONDS; RASA_HEALTH_FALL failed probes in a row take a node out of
  rotation, and so does one call that lost its node (a connection error or a timeout, confirmed
  by a probe that cannot connect); RASA_HEALTH_RISE good probes in a row bring it back. With no live node left, every
  node is tried anyway, in affinity order.
- **Exactly once.** Every message carries a fresh ``metadata["message_id"]``; Rasa's REST
  channel of this project (``bot/rest_channel.py``) records it as the ``message_id`` of the
  ``UserUttered`` event. When a node fails mid-turn, the conversation's tracker (in Redis, shared
  by every node) is read through another node before anything is resent: if our message was
  recorded, the bot messages recorded after it are the answer; if not, the message goes to the
  next node; if the tracker cannot be read, nothing is resent (the caller gets
  :class:`RasaUnavailable`, the customer a busy reply). A node that lost the connection or timed
  out but still answers its probe, or whose probe times out too (overloaded or hung, not known to
  be dead), may still be running the turn: nothing is resent then either.
  A customer never gets two answers to one message, and no message is processed twice.
- **Rasa's lock after a dead node.** A node killed mid-turn leaves its ticket in Rasa's lock of
  the conversation (in Redis) until the ticket's lifetime (TICKET_LOCK_LIFETIME, Rasa's default
  60 s) is over: the next node waits for it before it runs the turn. So a call made after a dead
  node gets RASA_TIMEOUT_SECONDS plus that lifetime (``lock_lifetime_seconds``), not only the
  usual timeout, which would otherwise expire in the wait and cost the customer a busy reply.
  The same holds for a call whose conversation's own node was taken out of rotation less than
  that lifetime ago, and for the hand-off's tracker events (``append_events``: pause, resume),
  for which Rasa takes the same lock.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from channels import metrics
from channels.rasa_client import RasaClient, RasaUnavailable
from integrations.masking import log_conversation_id as log_id

log = logging.getLogger(__name__)

#: Failures after which another node may be tried: a node that stopped answering (connection
#: lost or no answer in time, and its probe fails too), or a completed call that failed (5xx, a
#: body that is not Rasa's answer), whose turn is over either way.
NODE_FAILURES = ("connection", "http_5xx", "timeout", "bad_response")
#: The output keys of Rasa's REST channel that a ``BotUttered`` event keeps in ``data``.
BOT_DATA_KEYS = ("buttons", "image", "custom", "attachment", "elements", "quick_replies")


def rendezvous_score(node_url: str, conversation_id: str) -> int:
    """The weight of ``node_url`` for ``conversation_id`` (stable across processes and runs)."""
    digest = hashlib.sha256(f"{node_url}\x00{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass
class RasaNode:
    """One Rasa server and what the pool knows of its health."""

    client: RasaClient
    up: bool = True
    detail: str = "ok"
    failures: int = 0  # consecutive failed probes
    successes: int = 0  # consecutive good probes while down
    changed_at: float = field(default_factory=time.time)

    @property
    def url(self) -> str:
        return self.client.base_url

    def mark(self, up: bool, detail: str) -> None:
        if up != self.up:
            log.warning("Rasa node %s is %s (%s)", self.url, "back up" if up else "down", detail)
            self.changed_at = time.time()
        self.up, self.detail = up, detail
        self.failures = self.successes = 0
        metrics.RASA_NODE_UP.labels(self.url).set(1 if up else 0)


class RasaPool:
    """Several Rasa servers with the interface of :class:`RasaClient` (``send``, ``pause``,
    ``resume``, ``append_events``, ``ping``, ``base_url``/``session`` of a live node)."""

    def __init__(self, urls: list[str] | tuple[str, ...], timeout_seconds: float,
                 connect_timeout_seconds: float = 2.0, max_connections: int = 200, *,
                 health_interval_seconds: float = 2.0, health_fall: int = 2, health_rise: int = 2,
                 lock_lifetime_seconds: float = 60.0) -> None:
        if not urls:
            raise ValueError("a Rasa pool needs at least one URL")
        self.nodes = [RasaNode(RasaClient(url, timeout_seconds, connect_timeout_seconds, max_connections))
                      for url in urls]
        self.timeout = timeout_seconds
        self.lock_lifetime = lock_lifetime_seconds
        self.health_interval = health_interval_seconds
        self.health_fall = health_fall
        self.health_rise = health_rise
        self._health_task: asyncio.Task | None = None

    async def start(self) -> None:
        """Open every node's HTTP session and start the health checks (idempotent)."""
        for node in self.nodes:
            await node.client.start()
            metrics.RASA_NODE_UP.labels(node.url).set(1 if node.up else 0)
        if self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop(), name="rasa-health")

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
            self._health_task = None
        for node in self.nodes:
            await node.client.close()

    # -- routing --------------------------------------------------------------------------

    def ranked(self, conversation_id: str) -> list[RasaNode]:
        """The nodes to try for ``conversation_id``, best first: the live ones by rendezvous
        score, or every node by score when none is live."""
        ordered = sorted(self.nodes, key=lambda n: rendezvous_score(n.url, conversation_id), reverse=True)
        live = [n for n in ordered if n.up]
        return live or ordered

    @property
    def base_url(self) -> str:
        return self._first_live().client.base_url

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._first_live().client.session

    def _first_live(self) -> RasaNode:
        return next((n for n in self.nodes if n.up), self.nodes[0])

    # -- messages -------------------------------------------------------------------------

    async def send(self, sender: str, message: str, metadata: dict[str, Any] | None = None
                   ) -> list[dict[str, Any]]:
        """Send one message to the conversation's node; on a node failure answer it from the
        tracker if it was recorded, else retry on the next node. Raises :class:`RasaUnavailable`
        when no node answered or the outcome cannot be known."""
        message_id = uuid.uuid4().hex
        body_metadata = {**(metadata or {}), "message_id": message_id}
        tried: list[RasaNode] = []
        last: RasaUnavailable | None = None
        timeout = self._budget(sender)  # the client's own, unless a node died holding Rasa's lock
        for node in self.ranked(sender):
            if tried:
                recorded = await self._recorded_answer(sender, message_id, tried)
                if recorded is not None:
                    log.warning("turn of %s (message %s) was recorded before %s failed; answered from the tracker",
                                log_id(sender), message_id, tried[-1].url)
                    metrics.RASA_FAILOVERS.labels("from_tracker").inc()
                    return recorded
                metrics.RASA_FAILOVERS.labels("retried").inc()
            tried.append(node)
            try:
                return await node.client.send(sender, message, body_metadata, timeout_seconds=timeout)
            except RasaUnavailable as exc:
                last = exc
                if exc.reason not in NODE_FAILURES:
                    raise
                if exc.reason in ("connection", "timeout"):
                    # The request may have reached the node: if it still answers, it may still
                    # finish (and record) the turn, so resending could process it twice.
                    # A probe that times out does not prove the node dead either: an overloaded
                    # Rasa answers late, and still records the turn.
                    alive, detail = await node.client.ping()
                    if alive or detail == "timeout":
                        log.warning("Rasa node %s lost the turn of %s (message %s: %s) but %s; not resending",
                                    node.url, log_id(sender), message_id, exc,
                                    "answers its probe" if alive else "its probe timed out too (busy or hung)")
                        raise
                    node.mark(False, f"{exc.reason}, then {detail}")
                    # Its ticket in Rasa's lock of the conversation outlives it: the next node
                    # waits for the ticket to expire before it runs the turn.
                    timeout = self.timeout + self.lock_lifetime
                log.warning("Rasa node %s failed the turn of %s (message %s: %s); failing over%s",
                            node.url, log_id(sender), message_id, exc,
                            "" if timeout is None else f" (timeout {timeout:.0f}s: may wait for Rasa's lock)")
        assert last is not None
        try:  # the last node may have recorded the turn before failing
            recorded = await self._recorded_answer(sender, message_id, tried)
        except RasaUnavailable:
            raise last from None
        if recorded is not None:
            metrics.RASA_FAILOVERS.labels("from_tracker").inc()
            return recorded
        raise last

    async def _recorded_answer(self, sender: str, message_id: str, failed: list[RasaNode]
                               ) -> list[dict[str, Any]] | None:
        """The bot messages recorded after our ``UserUttered`` (None: it was not recorded).
        The tracker is read through a node that has not failed; if no node can read it, raise
        :class:`RasaUnavailable` (``unknown_outcome``): resending could answer twice."""
        readers = [n for n in self.ranked(sender) if n not in failed] or list(failed)
        for node in readers:
            try:
                events = await self._tracker_events(node.client, sender)
            except RasaUnavailable as exc:
                if exc.reason == "connection":  # a timeout may only mean a busy node
                    node.mark(False, exc.reason)
                continue
            return answer_after(events, sender, message_id)
        metrics.RASA_FAILOVERS.labels("unknown").inc()
        raise RasaUnavailable("unknown_outcome", "no node could read the tracker")

    @staticmethod
    async def _tracker_events(client: RasaClient, sender: str) -> list[dict[str, Any]]:
        url = f"{client.base_url}/conversations/{quote(sender, safe=':')}/tracker"
        try:
            async with client.session.get(url, params={"include_events": "AFTER_RESTART"}) as response:
                if response.status != 200:
                    await response.read()
                    raise RasaUnavailable(f"http_{response.status // 100}xx", f"status {response.status}")
                tracker = await response.json(content_type=None)
        except asyncio.TimeoutError:
            raise RasaUnavailable("timeout", "tracker") from None
        except aiohttp.ClientError as exc:
            raise RasaUnavailable("connection", type(exc).__name__) from None
        except ValueError:
            raise RasaUnavailable("bad_response", "tracker is not JSON") from None
        events = tracker.get("events") if isinstance(tracker, dict) else None
        if not isinstance(events, list):
            raise RasaUnavailable("bad_response", "tracker without events")
        return events

    # -- the HTTP API (hand-off) -------------------------------------------------------------

    async def append_events(self, sender: str, events: list[dict[str, Any]]) -> None:
        """Append tracker events (the hand-off's pause and resume, which may be appended twice
        harmlessly) through the conversation's node, the next one if it is dead or dropped the
        connection. Rasa takes the conversation's lock first, so the call gets the turns'
        budget after a dead node (:meth:`_budget`): RASA_TIMEOUT_SECONDS plus the ticket's
        lifetime. A timeout from a node that still answers its probe, or whose probe times out
        too, is raised: another node would wait for the same lock."""
        last: RasaUnavailable | None = None
        timeout = self._budget(sender)
        for node in self.ranked(sender):
            try:
                return await node.client.append_events(sender, events, timeout_seconds=timeout)
            except RasaUnavailable as exc:
                if exc.reason not in ("connection", "timeout"):
                    raise
                last = exc
                alive, detail = await node.client.ping()
                if alive or detail == "timeout":
                    if exc.reason == "timeout":
                        raise
                    continue  # a dropped connection to a live node: the next node
                node.mark(False, f"{exc.reason}, then {detail}")
                timeout = self.timeout + self.lock_lifetime
                log.warning("Rasa node %s failed the tracker events of %s (%s); the next node, "
                            "timeout %.0fs (may wait for Rasa's lock)", node.url, log_id(sender), exc, timeout)
        assert last is not None
        raise last

    def _budget(self, sender: str) -> float | None:
        """The timeout of a call for ``sender`` before any failure of its own: the client's
        (None) unless the conversation's own node (the best-ranked of all) is down and went down
        less than a ticket's lifetime ago; its ticket in Rasa's lock of the conversation may
        still be there, so RASA_TIMEOUT_SECONDS plus that lifetime."""
        own = max(self.nodes, key=lambda n: rendezvous_score(n.url, sender))
        if own.up or not self.lock_lifetime or time.time() - own.changed_at >= self.lock_lifetime:
            return None
        return self.timeout + self.lock_lifetime

    async def pause(self, sender: str) -> None:
        await self.append_events(sender, [{"event": "pause", "timestamp": time.time()}])

    async def resume(self, sender: str, slots: dict[str, Any] | None = None) -> None:
        now = time.time()
        await self.append_events(sender, [{"event": "resume", "timestamp": now}] + [
            {"event": "slot", "name": name, "value": value, "timestamp": now}
            for name, value in (slots or {}).items()])

    # -- health ---------------------------------------------------------------------------

    async def ping(self) -> tuple[bool, str]:
        """Probe every node now: (at least one answers, "<n>/<total> nodes up")."""
        results = await asyncio.gather(*(n.client.ping() for n in self.nodes))
        up = sum(ok for ok, _ in results)
        return up > 0, f"{up}/{len(self.nodes)} nodes up"

    def status(self) -> list[dict[str, Any]]:
        """Each node as the health checks see it (for /healthz)."""
        return [{"url": n.url, "up": n.up, "detail": n.detail, "since": round(n.changed_at)}
                for n in self.nodes]

    async def check_health(self) -> None:
        """Probe every node once and apply the fall/rise thresholds."""
        results = await asyncio.gather(*(n.client.ping() for n in self.nodes))
        for node, (ok, detail) in zip(self.nodes, results):
            if ok:
                node.failures = 0
                if node.up:
                    node.detail = "ok"
                else:
                    node.successes += 1
                    if node.successes >= self.health_rise:
                        node.mark(True, "ok")
            else:
                node.successes = 0
                if node.up:
                    node.failures += 1
                    if node.failures >= self.health_fall:
                        node.mark(False, detail)
                else:
                    node.detail = detail

    async def _health_loop(self) -> None:
        while True:
            try:
                await self.check_health()
            except Exception:  # noqa: BLE001 - the checks must outlive any surprise
                log.exception("Rasa health check failed")
            await asyncio.sleep(self.health_interval)


def answer_after(events: list[dict[str, Any]], sender: str, message_id: str) -> list[dict[str, Any]] | None:
    """Rasa REST messages of the ``bot`` events that follow the ``user`` event with
    ``message_id`` (up to the next user event); None when no such user event is recorded."""
    start = None
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.get("event") == "user" and message_id in (
                event.get("message_id"), (event.get("metadata") or {}).get("message_id")):
            start = index
            break
    if start is None:
        return None
    answer: list[dict[str, Any]] = []
    for event in events[start + 1:]:
        if event.get("event") == "user":
            break
        if event.get("event") != "bot":
            continue
        message: dict[str, Any] = {"recipient_id": sender}
        if event.get("text"):
            message["text"] = event["text"]
        data = event.get("data") or {}
        message.update({key: data[key] for key in BOT_DATA_KEYS if data.get(key)})
        if len(message) > 1:
            answer.append(message)
    return answer
