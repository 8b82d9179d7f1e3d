"""Business settings of the action server: service commitments, payment methods, verification.

Commitments and payment methods are read from YAML files (defaults in ``actions/config/``;
override the paths with ``SERVICE_COMMITMENTS_FILE`` and ``PAYMENT_METHODS_FILE``) and checked
when first loaded. Verification limits and the SMS one-time code switch come from the
environment (:class:`VerificationSettings`; every variable is listed in the README).
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import chinese_calendar
import yaml

from integrations.customer_store import Limit, VerificationLimits
from integrations.env import env_number

CONFIG_DIR = Path(__file__).parent / "config"


class SettingsError(ValueError):
    """A settings file is missing a value or holds one of the wrong kind."""


@dataclass(frozen=True)
class ServiceCommitments:
    """The utility's published service commitments (times the replies promise)."""

    repair_arrival_minutes: dict[str, int]
    planned_outage_notice_days: int
    connection_working_days: dict[str, int]
    complaint_ack_working_days: int

    @classmethod
    def from_mapping(cls, data: dict) -> "ServiceCommitments":
        try:
            arrival = {str(k): _positive_int(v) for k, v in data["repair_arrival_minutes"].items()}
            for zone in ("urban", "rural", "remote"):
                if zone not in arrival:
                    raise SettingsError(f"repair_arrival_minutes.{zone} is missing")
            return cls(
                repair_arrival_minutes=arrival,
                planned_outage_notice_days=_positive_int(data["planned_outage_notice_days"]),
                connection_working_days={
                    str(k): _positive_int(v) for k, v in data["connection_working_days"].items()
                },
                complaint_ack_working_days=_positive_int(data["complaint_ack_working_days"]),
            )
        except (KeyError, AttributeError, TypeError) as exc:
            raise SettingsError(f"service commitments: {exc!r}") from exc


@dataclass(frozen=True)
class PaymentMethod:
    name: str
    description: str
    online: bool


@dataclass(frozen=True)
class VerificationSettings:
    """How customers prove they own a 户号, and the limits on trying.

    ``sms_codes``: verify with a one-time code texted to the phone on file (the phone last-4
    stay as the fallback). ``VERIFICATION_SMS=on|off``; unset, it follows the SMS channel
    (on when ``SMS_PROVIDER`` is set, since the gateway's SMS channel delivers the codes).
    """

    sms_codes: bool
    limits: VerificationLimits

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "VerificationSettings":
        """Read the ``VERIFY_*``, ``VERIFICATION_SMS`` and ``WEB_BINDING_IDLE_DAYS`` variables;
        raises :class:`SettingsError` naming the variable on a bad value."""
        env = os.environ if env is None else env
        raw_sms = (env.get("VERIFICATION_SMS") or "").strip().lower()
        if raw_sms in ("", "auto"):
            sms_codes = bool((env.get("SMS_PROVIDER") or "").strip())
        elif raw_sms in ("on", "1", "true", "yes"):
            sms_codes = True
        elif raw_sms in ("off", "0", "false", "no"):
            sms_codes = False
        else:
            raise SettingsError(f"VERIFICATION_SMS must be on or off, got {raw_sms!r}")
        lock = _env_int(env, "VERIFY_LOCK_MINUTES", 30, 1, 24 * 60) * 60
        max_lock = _env_int(env, "VERIFY_MAX_LOCK_HOURS", 24, 1, 24 * 30) * 3600
        if max_lock < lock:
            raise SettingsError("VERIFY_MAX_LOCK_HOURS must not be shorter than VERIFY_LOCK_MINUTES")

        def escalating(name: str, default: int, window: int) -> Limit:
            return Limit(_env_int(env, name, default, 1, 100_000), window, lock, max_lock)

        def hourly(name: str, default: int) -> Limit:
            return Limit(_env_int(env, name, default, 1, 1000), 3600, 3600, 3600)

        return cls(sms_codes=sms_codes, limits=VerificationLimits(
            conversation=escalating("VERIFY_MAX_FAILURES_CONVERSATION", 5, lock),
            account=escalating("VERIFY_MAX_FAILURES_ACCOUNT", 10, lock),
            address=escalating("VERIFY_MAX_FAILURES_ADDRESS", 20, 3600),
            service=Limit(_env_int(env, "VERIFY_MAX_FAILURES_SERVICE", 200, 1, 10_000_000),
                          3600, lock, lock),
            codes_per_account=hourly("VERIFY_CODES_PER_HOUR_ACCOUNT", 5),
            codes_per_conversation=hourly("VERIFY_CODES_PER_HOUR_CONVERSATION", 3),
            codes_per_address=hourly("VERIFY_CODES_PER_HOUR_ADDRESS", 10),
            web_idle_seconds=_env_int(env, "WEB_BINDING_IDLE_DAYS", 30, 1, 3650) * 86400,
        ))


def _env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return env_number(env, name, default, low, high, error=SettingsError)


@dataclass(frozen=True)
class CreationLimits:
    """How many hall queue numbers, repair tickets and complaints (each kind on its own) one
    conversation and one client address may create per hour: ``NEW_TICKETS_PER_HOUR_CONVERSATION``
    [3] and ``NEW_TICKETS_PER_HOUR_ADDRESS`` [10; everyone behind one NAT shares it; IPv6 per /64].
    """

    per_conversation: int = 3
    per_address: int = 10

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "CreationLimits":
        """Read both variables; raises :class:`SettingsError` naming the variable on a bad value."""
        env = os.environ if env is None else env
        return cls(per_conversation=_env_int(env, "NEW_TICKETS_PER_HOUR_CONVERSATION", 3, 1, 1000),
                   per_address=_env_int(env, "NEW_TICKETS_PER_HOUR_ADDRESS", 10, 1, 100_000))


@dataclass(frozen=True)
class HandoffSettings:
    """When actions hand a conversation to a human agent on their own (besides 转人工 and the
    accepted offer after two misunderstandings): ``HANDOFF_ON_URGENT_FAULT`` [on]: a fault report
    graded urgent (danger to life) is also handed off; ``HANDOFF_ON_SEVERE_COMPLAINT`` [high]:
    complaints graded ``high`` or worse (``urgent``: only urgent ones; ``off``: none)."""

    on_urgent_fault: bool = True
    complaint_severities: frozenset[str] = frozenset({"high", "urgent"})

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "HandoffSettings":
        """Read both variables; raises :class:`SettingsError` naming the variable on a bad value."""
        env = os.environ if env is None else env
        raw_fault = (env.get("HANDOFF_ON_URGENT_FAULT") or "on").strip().lower()
        if raw_fault not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
            raise SettingsError(f"HANDOFF_ON_URGENT_FAULT must be on or off, got {raw_fault!r}")
        raw_complaint = (env.get("HANDOFF_ON_SEVERE_COMPLAINT") or "high").strip().lower()
        severities = {"off": frozenset(), "urgent": frozenset({"urgent"}),
                      "high": frozenset({"high", "urgent"})}.get(raw_complaint)
        if severities is None:
            raise SettingsError(f"HANDOFF_ON_SEVERE_COMPLAINT must be high, urgent or off, got {raw_complaint!r}")
        return cls(on_urgent_fault=raw_fault in ("on", "1", "true", "yes"), complaint_severities=severities)


@dataclass(frozen=True)
class Settings:
    commitments: ServiceCommitments
    payment_methods: tuple[PaymentMethod, ...]

    @classmethod
    def load(
        cls,
        commitments_file: str | os.PathLike | None = None,
        payment_methods_file: str | os.PathLike | None = None,
    ) -> "Settings":
        """Read both files (paths from the arguments, else the environment, else the defaults)."""
        commitments_path = Path(
            commitments_file
            or os.environ.get("SERVICE_COMMITMENTS_FILE")
            or CONFIG_DIR / "service_commitments.yml"
        )
        methods_path = Path(
            payment_methods_file
            or os.environ.get("PAYMENT_METHODS_FILE")
            or CONFIG_DIR / "payment_methods.yml"
        )
        commitments = ServiceCommitments.from_mapping(_read_yaml(commitments_path))
        raw_methods = _read_yaml(methods_path).get("payment_methods") or []
        try:
            methods = tuple(
                PaymentMethod(str(m["name"]), str(m["description"]), bool(m.get("online", False)))
                for m in raw_methods
            )
        except (KeyError, TypeError) as exc:
            raise SettingsError(f"{methods_path}: {exc!r}") from exc
        if not methods:
            raise SettingsError(f"{methods_path}: no payment methods configured")
        return cls(commitments=commitments, payment_methods=methods)


def add_working_days(start: dt.datetime, working_days: int) -> dt.datetime:
    """The moment ``working_days`` Chinese working days after ``start`` (same time of day).

    Weekends, public holidays and the official make-up working days (调休) follow
    chinese_calendar. Outside the years it knows, weekdays count as working days.
    """
    day = start.date()
    remaining = working_days
    while remaining > 0:
        day += dt.timedelta(days=1)
        if _is_workday(day):
            remaining -= 1
    return dt.datetime.combine(day, start.timetz())


def working_days_between(start: dt.date, end: dt.date) -> int:
    """Working days after ``start`` up to and including ``end`` (0 when end <= start)."""
    count, day = 0, start
    while day < end:
        day += dt.timedelta(days=1)
        if _is_workday(day):
            count += 1
    return count


def _is_workday(day: dt.date) -> bool:
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return day.weekday() < 5


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return data


def _positive_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SettingsError(f"expected a positive whole number, got {value!r}")
    return value
