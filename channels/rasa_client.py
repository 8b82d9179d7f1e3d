"""A small client for Rasa's REST channel (``POST /webhooks/rest/webhook``) and, for the
hand-off, its HTTP API's tracker events (``POST /conversations/<id>/tracker/events``; Rasa runs
with ``--enable-api`` on loopback).

One ``aiohttp.ClientSession`` (keep-alive connection pool) per gateway process, explicit
timeouts, and one exception type for everything that means "Rasa did not answer usefully".
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from channels import metrics


class RasaUnavailable(Exception):
    """Rasa could not be reached, timed out, answered 5xx/4xx, or sent something unparseable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # short label, used as a metric label


class RasaClient:
    """Talk to one Rasa server over its REST channel; ``start()`` before use, ``close()`` after."""

    def __init__(self, base_url: str, timeout_seconds: float, connect_timeout_seconds: float = 2.0,
                 max_connections: int = 200) -> None:
        self.base_url = base_url.rstrip("/")
        self.webhook_url = f"{self.base_url}/webhooks/rest/webhook"
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds,
                                              sock_connect=connect_timeout_seconds)
        self._probe_timeout = aiohttp.ClientTimeout(total=min(2.0, timeout_seconds),
                                                    sock_connect=connect_timeout_seconds)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the shared HTTP session (idempotent)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  json_serialize=_dumps)

    async def close(self) -> None:
        """Close the HTTP session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RasaClient.start() was not called")
        return self._session

    async def send(self, sender: str, message: str, metadata: dict[str, Any] | None = None,
                   timeout_seconds: float | None = None) -> list[dict[str, Any]]:
        """Send one user message; returns Rasa's list of bot messages (possibly empty).
        ``timeout_seconds`` replaces the client's timeout for this call (a pool's retry may
        first wait for Rasa's lock of the conversation).

        Raises :class:`RasaUnavailable` on connection errors, timeouts, non-200 answers and
        bodies that are not a JSON list.
        """
        body = {"sender": sender, "message": message, "metadata": metadata or {}}
        timeout = self._timeout if timeout_seconds is None else aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=self._timeout.sock_connect)
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self.session.post(self.webhook_url, json=body, timeout=timeout) as response:
                if response.status != 200:
                    outcome = f"http_{response.status // 100}xx"
                    await response.read()
                    raise RasaUnavailable(outcome, f"status {response.status}")
                raw = await response.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                outcome = "bad_response"
                raise RasaUnavailable(outcome, "body is not JSON") from None
            if not isinstance(answer, list) or not all(isinstance(m, dict) for m in answer):
                outcome = "bad_response"
                raise RasaUnavailable(outcome, "body is not a list of messages")
            outcome = "ok"
            return answer
        except asyncio.TimeoutError:
            outcome = "timeout"
            raise RasaUnavailable(outcome, f"no answer within {timeout.total}s") from None
        except aiohttp.ClientError as exc:
            outcome = "connection"
            raise RasaUnavailable(outcome, type(exc).__name__) from None
        finally:
            metrics.RASA_LATENCY.labels(outcome).observe(time.perf_counter() - started)

    async def append_events(self, sender: str, events: list[dict[str, Any]],
                            timeout_seconds: float | None = None) -> None:
        """Append ``events`` (Rasa's JSON events, e.g. ``{"event": "pause"}``) to the tracker of
        ``sender``; Rasa takes the conversation's lock first, so this waits for a turn in
        progress. ``timeout_seconds`` as in :meth:`send`. Raises :class:`RasaUnavailable` like
        :meth:`send`."""
        url = f"{self.base_url}/conversations/{quote(sender, safe=':')}/tracker/events"
        timeout = self._timeout if timeout_seconds is None else aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=self._timeout.sock_connect)
        try:
            async with self.session.post(url, json=events, params={"include_events": "NONE"},
                                         timeout=timeout) as response:
                await response.read()
                if response.status != 200:
                    raise RasaUnavailable(f"http_{response.status // 100}xx", f"status {response.status}")
        except asyncio.TimeoutError:
            raise RasaUnavailable("timeout", f"no answer within {timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise RasaUnavailable("connection", type(exc).__name__) from None

    async def pause(self, sender: str) -> None:
        """Record in Rasa's tracker that an agent took the conversation (``ConversationPaused``)."""
        await self.append_events(sender, [{"event": "pause", "timestamp": time.time()}])

    async def resume(self, sender: str, slots: dict[str, Any] | None = None) -> None:
        """Record that the assistant has the conversation again (``ConversationResumed``), with
        ``slots`` set in the same call (e.g. ``{"handoff_requested_at": None}``)."""
        now = time.time()
        await self.append_events(sender, [{"event": "resume", "timestamp": now}] + [
            {"event": "slot", "name": name, "value": value, "timestamp": now}
            for name, value in (slots or {}).items()])

    async def ping(self) -> tuple[bool, str]:
        """Is Rasa up? ``GET /`` (Rasa answers "Hello from Rasa: <version>"); (ok, detail)."""
        try:
            async with self.session.get(self.base_url + "/", timeout=self._probe_timeout) as response:
                text = (await response.text())[:80]
                return response.status == 200, text if response.status == 200 else f"status {response.status}"
        except asyncio.TimeoutError:
            return False, "timeout"
        except aiohttp.ClientError as exc:
            return False, type(exc).__name__


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
