"""The exceptions every backend client raises.

``IntegrationError`` is the root. Callers catch the four kinds below (or the root); each client
module adds its own subclass of each kind (``BillingNotFound(BillingError, NotFound)`` …) so a
caller can also tell which backend failed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


class IntegrationError(Exception):
    """A call to a backend did not produce a usable answer."""

    def __init__(self, message: str, *, status: Optional[int] = None,
                 code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class BackendUnavailable(IntegrationError):
    """The backend could not be reached, timed out, or answered 5xx."""


class NotFound(IntegrationError):
    """The backend answered 404: the thing asked for does not exist."""


class BackendRejected(IntegrationError):
    """The backend refused the request (4xx other than 404); carries its code and message."""


class BadBackendResponse(IntegrationError):
    """The backend answered 2xx with a body that is not the documented JSON."""


@dataclass(frozen=True)
class ErrorFamily:
    """The exception classes one client raises, one per kind."""

    unavailable: type[BackendUnavailable] = BackendUnavailable
    not_found: type[NotFound] = NotFound
    rejected: type[BackendRejected] = BackendRejected
    bad_response: type[BadBackendResponse] = BadBackendResponse


DEFAULT_ERRORS = ErrorFamily()
