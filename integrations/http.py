"""A small JSON-over-HTTP client shared by the backend clients.

Only ``ClientSession``, ``ClientTimeout``, ``response.status`` and ``response.json`` are used, so
it behaves the same on aiohttp 3.9 (Rasa environment) and 3.14 (app environment).
"""
from __future__ import annotations

import asyncio
import json
import logging
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping, Optional
from urllib.parse import quote

import aiohttp

from integrations.errors import DEFAULT_ERRORS, ErrorFamily, IntegrationError

logger = logging.getLogger(__name__)

_NO_BODY = object()


def path_segment(value: Any) -> str:
    """``value`` quoted for use as one URL path segment (no ``/`` can slip through)."""
    return quote(str(value), safe="")


class _Timeout(Exception):
    """Internal marker: the attempt ran out of time (not retried, see ``get_json``)."""


class JsonHttpClient:
    """JSON requests to one backend base URL, with errors mapped to ``integrations.errors``.

    GETs are retried ``retries_for_reads`` times on connection failures and 5xx answers, with a
    short exponential backoff; a timed-out GET is not retried, because waiting again for a slow
    backend would outlast the caller's own deadline. POSTs are never retried (not idempotent).
    The aiohttp session is created on first use, inside the running event loop.
    """

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 3.0,
        retries_for_reads: int = 2,
        *,
        errors: ErrorFamily = DEFAULT_ERRORS,
        backoff_s: float = 0.1,
        service: str = "backend",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if retries_for_reads < 0:
            raise ValueError("retries_for_reads must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries_for_reads = retries_for_reads
        self.errors = errors
        self.backoff_s = backoff_s
        self.service = service
        self._session: Optional[aiohttp.ClientSession] = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"Accept": "application/json"},
            )
        return self._session

    async def close(self) -> None:
        """Close the underlying session (safe to call twice or before any request)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def get_json(self, path: str, params: Optional[Mapping[str, Any]] = None) -> Any:
        """GET ``base_url + path`` and return the decoded JSON body."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        attempts = 1 + self.retries_for_reads
        for attempt in range(attempts):
            try:
                return await self._request("GET", path, query, _NO_BODY)
            except self.errors.unavailable as exc:
                if getattr(exc, "timed_out", False) or attempt == attempts - 1:
                    raise
                logger.info("%s GET %s failed (%s), retry %d/%d", self.service, path,
                            exc.message, attempt + 1, self.retries_for_reads)
                await asyncio.sleep(self.backoff_s * (2 ** attempt))
        raise AssertionError("unreachable")

    async def post_json(self, path: str, body: Any) -> Any:
        """POST ``body`` as JSON to ``base_url + path`` (no retry) and return the decoded JSON."""
        return await self._request("POST", path, None, body)

    async def _request(self, method: str, path: str, query: Optional[dict], body: Any) -> Any:
        url = f"{self.base_url}{path}"
        kwargs: dict[str, Any] = {}
        if query:
            kwargs["params"] = query
        if body is not _NO_BODY:
            kwargs["json"] = body
        try:
            async with self._get_session().request(method, url, **kwargs) as response:
                status = response.status
                raw = await response.read()
        except asyncio.TimeoutError:
            exc = self.errors.unavailable(
                f"{self.service}: no answer within {self.timeout_s:g}s ({method} {path})")
            exc.timed_out = True  # type: ignore[attr-defined]
            raise exc from None
        except aiohttp.ClientError as err:
            raise self.errors.unavailable(
                f"{self.service}: {type(err).__name__} on {method} {path}") from err
        return self._decode(method, path, status, raw)

    def _decode(self, method: str, path: str, status: int, raw: bytes) -> Any:
        try:
            data = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            data = _NO_BODY
        if 200 <= status < 300:
            if data is _NO_BODY or data is None:
                raise self.errors.bad_response(
                    f"{self.service}: {method} {path} answered {status} without JSON", status=status)
            return data
        code, message = _error_fields(data)
        text = f"{self.service}: {method} {path} answered {status}" + (f" ({code}: {message})" if code else "")
        if status >= 500:
            raise self.errors.unavailable(text, status=status, code=code)
        if status == 404:
            raise self.errors.not_found(text, status=status, code=code or "not_found")
        if 400 <= status < 500:
            rejected = self.errors.rejected(text, status=status, code=code)
            rejected.backend_message = message  # type: ignore[attr-defined]
            raise rejected
        raise self.errors.bad_response(text, status=status)


def _error_fields(data: Any) -> tuple[Optional[str], Optional[str]]:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        return (str(err["code"]) if err.get("code") else None,
                str(err["message"]) if err.get("message") else None)
    return None, None


def parse_or_raise(errors: ErrorFamily, service: str, what: str, parse, data: Any):
    """``parse(data)``, turning a malformed body (missing keys, wrong types) into bad_response."""
    try:
        return parse(data)
    except IntegrationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as err:
        raise errors.bad_response(f"{service}: malformed {what}: {type(err).__name__}: {err}") from err


# Field converters used by the client modules' ``from_json`` parsers.

def to_decimal(value: Any) -> Decimal:
    """A JSON number (or numeric string) as an exact Decimal (``0.5283`` stays ``0.5283``)."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"expected a number, got {value!r}")
    return Decimal(str(value))


def to_decimal_or_none(value: Any) -> Optional[Decimal]:
    return None if value is None else to_decimal(value)


def to_datetime(value: Any) -> datetime:
    """An ISO-8601 time with offset as an aware datetime."""
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO-8601 string, got {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time without offset: {value!r}")
    return moment


def to_datetime_or_none(value: Any) -> Optional[datetime]:
    return None if value is None else to_datetime(value)


def to_date(value: Any) -> date:
    if not isinstance(value, str):
        raise TypeError(f"expected YYYY-MM-DD, got {value!r}")
    return date.fromisoformat(value)


def to_str_or_none(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def to_list(value: Any) -> list:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value
