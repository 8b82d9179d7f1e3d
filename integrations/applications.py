"""Applications (业扩) backend client: 新装/增容/过户/光伏并网/销户 and their stages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Protocol

from integrations.errors import (
    BackendRejected, BackendUnavailable, BadBackendResponse, ErrorFamily, IntegrationError, NotFound,
)
from integrations.http import (
    JsonHttpClient, parse_or_raise, path_segment, to_datetime, to_datetime_or_none, to_list,
)


class ApplicationsError(IntegrationError):
    """Any failure of the applications backend."""


class ApplicationsUnavailable(ApplicationsError, BackendUnavailable):
    pass


class ApplicationNotFound(ApplicationsError, NotFound):
    pass


class ApplicationRejected(ApplicationsError, BackendRejected):
    pass


class BadApplicationsResponse(ApplicationsError, BadBackendResponse):
    pass


ERRORS = ErrorFamily(ApplicationsUnavailable, ApplicationNotFound, ApplicationRejected,
                     BadApplicationsResponse)


@dataclass(frozen=True)
class Stage:
    name: str
    started_at: Optional[datetime]
    completed_at: Optional[datetime]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Stage":
        return cls(str(d["name"]), to_datetime_or_none(d.get("started_at")),
                   to_datetime_or_none(d.get("completed_at")))


@dataclass(frozen=True)
class Manager:
    name: str
    phone: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manager":
        return cls(str(d["name"]), str(d["phone"]))


@dataclass(frozen=True)
class Application:
    application_number: str
    account_number: str
    business_type: str  # 新装 | 增容 | 过户 | 光伏并网 | 销户
    customer_type: str
    submitted_at: datetime
    status: str  # in_progress | completed | cancelled
    current_stage: str
    stages: tuple[Stage, ...]
    manager: Optional[Manager]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Application":
        manager = d.get("manager")
        return cls(str(d["application_number"]), str(d["account_number"]), str(d["business_type"]),
                   str(d["customer_type"]), to_datetime(d["submitted_at"]), str(d["status"]),
                   str(d["current_stage"]), tuple(Stage.from_json(s) for s in to_list(d["stages"])),
                   Manager.from_json(manager) if manager else None)


class ApplicationsClient(Protocol):
    async def get_application(self, application_number: str) -> Application: ...
    async def applications_of(self, account_number: str) -> list[Application]: ...
    async def close(self) -> None: ...


class HttpApplicationsClient:
    """``ApplicationsClient`` over the applications HTTP API."""

    def __init__(self, base_url: str, timeout_s: float = 3.0, retries_for_reads: int = 2) -> None:
        self.http = JsonHttpClient(base_url, timeout_s, retries_for_reads, errors=ERRORS,
                                   service="applications")

    async def get_application(self, application_number: str) -> Application:
        data = await self.http.get_json(f"/applications/{path_segment(application_number)}")
        return parse_or_raise(ERRORS, "applications", "application", Application.from_json, data)

    async def applications_of(self, account_number: str) -> list[Application]:
        data = await self.http.get_json("/applications", {"account_number": account_number})
        return parse_or_raise(ERRORS, "applications", "applications",
                              lambda d: [Application.from_json(a) for a in to_list(d["applications"])],
                              data)

    async def close(self) -> None:
        await self.http.close()
