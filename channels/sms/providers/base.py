"""The sender interface: a tiny adapter per provider, bookkeeping in one final base method.

A provider implements only :meth:`SmsSender._send` (one HTTP call for a batch of requests that
share a template) and :meth:`SmsSender.classify` (its error codes → :class:`Outcome`).
:meth:`SmsSender.send_many` — final — validates numbers, batches, applies the timeout, turns
transport failures into retryable results and logs every result with the number masked.
"""
from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import ClassVar, final

import aiohttp

from channels.sms.phones import mask, normalise_phone

log = logging.getLogger("channels.sms.provider")


class Outcome(str, Enum):
    """What to do after a send attempt."""

    SENT = "sent"            # accepted by the provider; a delivery report may follow
    THROTTLED = "throttled"  # provider flow control: same message, later
    RETRY = "retry"          # transient failure (network, provider 5xx): retry with backoff
    PERMANENT = "permanent"  # will never succeed as is: stop and record


@dataclass(frozen=True)
class SmsRequest:
    """One templated SMS to one number. ``params`` are in the template's variable order."""

    phone: str
    template_id: str
    params: dict[str, str] = field(default_factory=dict)
    out_id: str = ""


@dataclass(frozen=True)
class SendResult:
    """The provider's answer for one request."""

    phone: str
    outcome: Outcome
    code: str
    message: str = ""
    provider_id: str = ""        # Aliyun BizId / Tencent SerialNo (delivery reports refer to it)
    retry_after: float | None = None
    out_id: str = ""


@dataclass(frozen=True)
class SentRecord:
    """What a provider's query API says of one message it accepted: ``state`` ``pending`` (no
    status report yet), ``delivered`` or ``undelivered``; ``provider_id`` may be unknown ("")."""

    provider_id: str
    state: str
    code: str = ""
    reported_at: str = ""   # provider's "YYYY-MM-DD HH:MM:SS" of the report, "" when pending


@dataclass(frozen=True)
class Lookup:
    """The answer of :meth:`SmsSender.lookup`: ``ok`` False when the query itself failed (then
    nothing is known); else ``record`` is the message, or None when the provider lists none."""

    ok: bool
    record: SentRecord | None = None


class ProviderResponseError(Exception):
    """The provider answered something that is not its documented response shape."""


class SmsSender(ABC):
    """Sends templated SMS through one provider."""

    name: ClassVar[str] = ""
    max_batch: ClassVar[int] = 1
    # True when the query API lists every accepted message at once (a message it does not list
    # was never accepted); False when it lists a message only after its status report.
    lookup_is_conclusive: ClassVar[bool] = False

    def __init__(self, sign_name: str, timeout_s: float = 5.0) -> None:
        self.sign_name = sign_name
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session, created on first use (never at import or construction)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @abstractmethod
    async def _send(self, requests: list[SmsRequest]) -> list[SendResult]:
        """Send ``requests`` (same template, at most ``max_batch``) in one provider call;
        one result per request, in order. May raise aiohttp errors or ProviderResponseError."""

    @abstractmethod
    def classify(self, code: str) -> tuple[Outcome, float | None]:
        """The outcome of a provider error code, and a retry delay in seconds if it has one."""

    async def _find(self, phone: str, ref: str, since: float) -> SentRecord | None:
        """The message to ``phone`` sent with reference ``ref`` (OutId / SessionContext) at or
        after ``since`` (unix time), from the provider's query API; may raise like ``_send``."""
        raise NotImplementedError

    @final
    async def lookup(self, phone: str, ref: str, since: float) -> Lookup:
        """Ask the provider whether it accepted the message to ``phone`` with reference ``ref``
        (sent at or after ``since``); never raises for provider or network failures."""
        number = normalise_phone(phone)
        if number is None or not ref:
            return Lookup(False)
        try:
            record = await asyncio.wait_for(self._find(number, ref, since), self.timeout_s * 2)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ProviderResponseError,
                NotImplementedError) as exc:
            log.warning("sms %s query for %s failed: %s", self.name, mask(number),
                        type(exc).__name__)
            return Lookup(False)
        log.info("sms %s query for %s: %s", self.name, mask(number),
                 record.state if record else "not found")
        return Lookup(True, record)

    @final
    async def send(self, request: SmsRequest) -> SendResult:
        """Send one SMS; never raises for provider or network failures."""
        return (await self.send_many([request]))[0]

    @final
    async def send_many(self, requests: list[SmsRequest]) -> list[SendResult]:
        """Send many SMS, batching those that share a template; one result per request."""
        requests = list(requests)
        results: list[SendResult | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            phone = normalise_phone(request.phone)
            if phone is None:
                results[index] = SendResult(request.phone, Outcome.PERMANENT, "invalid_phone",
                                            "not a mainland mobile number", out_id=request.out_id)
                continue
            requests[index] = replace(request, phone=phone)
            groups.setdefault(request.template_id, []).append(index)
        for indexes in groups.values():
            for start in range(0, len(indexes), self.max_batch):
                chunk = indexes[start:start + self.max_batch]
                batch = [requests[i] for i in chunk]
                for i, result in zip(chunk, await self._attempt(batch)):
                    results[i] = replace(result, out_id=requests[i].out_id)
        for result in results:
            assert result is not None
            level = logging.INFO if result.outcome is Outcome.SENT else logging.WARNING
            log.log(level, "sms %s to %s: %s %s %s", self.name, mask(result.phone),
                    result.outcome.value, result.code, result.message)
        return results  # type: ignore[return-value]

    async def _attempt(self, batch: list[SmsRequest]) -> list[SendResult]:
        try:
            results = await asyncio.wait_for(self._send(batch), self.timeout_s)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return [SendResult(r.phone, Outcome.RETRY, "network", type(exc).__name__) for r in batch]
        except ProviderResponseError as exc:
            return [SendResult(r.phone, Outcome.RETRY, "bad_response", str(exc)[:200])
                    for r in batch]
        if len(results) != len(batch):
            return [SendResult(r.phone, Outcome.RETRY, "bad_response", "result count mismatch")
                    for r in batch]
        return results
