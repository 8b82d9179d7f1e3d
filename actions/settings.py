"""Business settings of the action server: service commitments and payment methods.

Both are read from YAML files (defaults in ``actions/config/``; override the paths with
``SERVICE_COMMITMENTS_FILE`` and ``PAYMENT_METHODS_FILE``) and checked when first loaded.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import chinese_calendar
import yaml

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
