"""What every action shares: the services it talks to, its deadline, and failure handling.

Actions that call a backend subclass :class:`BackendAction` and implement ``act``; the final
``run`` applies the deadline and turns any failure into the polite busy reply, a masked log
line and an empty event list, so a customer never meets a stack trace or silence.
"""
from __future__ import annotations

import abc
import asyncio
import logging
import ipaddress
import os
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.constants import HOTLINE
from actions.settings import Settings, VerificationSettings
from integrations.clients import BackendClients
from integrations.config import BackendsConfig, redis_socket_timeout
from integrations.customer_store import CustomerStore
from integrations.masking import log_conversation_id, mask_text
from integrations.redis_url import async_client

logger = logging.getLogger(__name__)

BUSY_TEXT = f"系统繁忙，请稍后再试。如有紧急情况，请拨打{HOTLINE}供电服务热线。"

EventList = list[dict[str, Any]]


@dataclass(frozen=True)
class ActionServerConfig:
    """Settings of the action server process, read from the environment."""

    redis_url: str
    deadline_seconds: float

    @classmethod
    def from_env(cls) -> "ActionServerConfig":
        deadline = float(os.environ.get("ACTION_DEADLINE_SECONDS", "8"))
        if deadline <= 0:
            raise ValueError("ACTION_DEADLINE_SECONDS must be positive")
        return cls(
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            deadline_seconds=deadline,
        )


class Services:
    """Everything actions talk to: backend clients, the customer store and settings."""

    def __init__(
        self,
        config: ActionServerConfig,
        clients: BackendClients,
        customers: CustomerStore,
        settings: Settings,
        verification: VerificationSettings,
    ) -> None:
        self.config = config
        self.clients = clients
        self.billing = clients.billing
        self.outage = clients.outage
        self.queue = clients.queue
        self.tickets = clients.tickets
        self.applications = clients.applications
        self.customers = customers
        self.settings = settings
        self.verification = verification

    @classmethod
    def from_env(cls) -> "Services":
        config = ActionServerConfig.from_env()
        timeout = redis_socket_timeout()  # a hung Redis fails the action, not stalls it
        redis = async_client(config.redis_url, decode_responses=True,  # any REDIS_URL form
                             socket_timeout=timeout, socket_connect_timeout=timeout)
        verification = VerificationSettings.from_env()
        return cls(
            config=config,
            clients=BackendClients.from_config(BackendsConfig.from_env()),
            customers=CustomerStore(redis, verification.limits),
            settings=Settings.load(),
            verification=verification,
        )


_services: Services | None = None


def get_services() -> Services:
    """The process-wide services, built on first use (never at import time)."""
    global _services
    if _services is None:
        _services = Services.from_env()
    return _services


def conversation_id(tracker: Tracker) -> str:
    """The conversation's id, already namespaced by channel (``web:…``, ``wechat:…``, ``sms:…``)."""
    return tracker.sender_id


def client_address(tracker: Tracker) -> Optional[str]:
    """The customer's network address from the message metadata (``client_address``, set by
    the gateway for web chat; WeChat and SMS have none), as the unit limits count: an IPv4
    address, or an IPv6 /64 (one subscriber's whole prefix). None when absent or malformed."""
    metadata = tracker.latest_message.get("metadata") or {}
    raw = metadata.get("client_address") if isinstance(metadata, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def bound_account(tracker: Tracker, services: Services) -> str | None:
    """The 户号 this conversation has bound and verified, if any."""
    return await services.customers.get_binding(conversation_id(tracker))


def buttons(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    """Rasa buttons from ``(title, payload)`` pairs."""
    return [{"title": title, "payload": payload} for title, payload in pairs]


async def _guarded(
    action_name: str,
    tracker: Tracker,
    dispatcher: CollectingDispatcher,
    work: Callable[[], Awaitable[EventList]],
) -> EventList:
    deadline = get_services().config.deadline_seconds
    try:
        return await asyncio.wait_for(work(), timeout=deadline)
    except asyncio.TimeoutError:
        logger.warning(
            "action %s for %s missed its %.1fs deadline",
            action_name, log_conversation_id(tracker.sender_id), deadline,
        )
    except Exception as exc:  # noqa: BLE001 - every failure must become a reply, see module doc
        logger.error(
            "action %s for %s failed: %s: %s",
            action_name, log_conversation_id(tracker.sender_id), type(exc).__name__,
            mask_text(str(exc)),
            exc_info=not _is_expected(exc),
        )
    dispatcher.utter_message(text=BUSY_TEXT)
    return []


def _is_expected(exc: Exception) -> bool:
    """Backend and Redis outages are expected; anything else is a bug worth a traceback."""
    from integrations.errors import IntegrationError
    from redis.exceptions import RedisError

    return isinstance(exc, (IntegrationError, RedisError, OSError))


class BackendAction(Action, metaclass=abc.ABCMeta):
    """An action that calls backends. Subclasses implement :meth:`act`, never ``run``."""

    @abc.abstractmethod
    def name(self) -> str: ...

    @abc.abstractmethod
    async def act(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
        services: Services,
    ) -> EventList:
        """Do the action's work; exceptions and the deadline are handled by ``run``."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> EventList:
        return await _guarded(
            self.name(), tracker, dispatcher,
            lambda: self.act(dispatcher, tracker, domain, get_services()),
        )


class BackendFormValidationAction(FormValidationAction, metaclass=abc.ABCMeta):
    """A form validation action whose validators may call backends.

    The validators (``validate_<slot>``) reach the services through :attr:`services`; a failure
    answers with the busy reply and leaves the form's slots as they were.
    """

    @abc.abstractmethod
    def name(self) -> str:
        """``validate_<form name>``; abstract so rasa-sdk does not register this base class."""

    @property
    def services(self) -> Services:
        return get_services()

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> EventList:
        return await _guarded(
            self.name(), tracker, dispatcher,
            lambda: super(BackendFormValidationAction, self).run(dispatcher, tracker, domain),
        )
