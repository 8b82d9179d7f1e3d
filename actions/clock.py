"""Local time: the utility's time zone, the current moment, and how replies say a moment.

Every action reads the time through :func:`now_local`, in ``POWERDESK_TIMEZONE`` (default
Asia/Shanghai), so due dates, outage windows and promised times agree with each other.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Any, Optional
from zoneinfo import ZoneInfo

_RELATIVE_DAYS = {-1: "昨天", 0: "今天", 1: "明天", 2: "后天"}


def local_tz() -> ZoneInfo:
    """The utility's local time zone (POWERDESK_TIMEZONE, default Asia/Shanghai)."""
    return ZoneInfo(os.environ.get("POWERDESK_TIMEZONE", "Asia/Shanghai"))


def now_local() -> dt.datetime:
    """The current moment in the local time zone."""
    return dt.datetime.now(local_tz())


def today() -> dt.date:
    """Today's date in the local time zone."""
    return now_local().date()


def as_local(value: Any) -> Optional[dt.datetime]:
    """A local datetime from a datetime or an ISO-8601 string (naive values count as local)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=local_tz())
    return value.astimezone(local_tz())


def describe_day(moment: dt.datetime, today: dt.date, with_year: bool = False) -> str:
    """``11月25日（明天）``: month and day, with 昨天/今天/明天/后天 when close; the year is
    prefixed when ``with_year`` and it is not ``today``'s year."""
    label = f"{moment.month}月{moment.day}日"
    if with_year and moment.year != today.year:
        label = f"{moment.year}年{label}"
    relative = _RELATIVE_DAYS.get((moment.date() - today).days)
    return f"{label}（{relative}）" if relative else label


def describe_moment(moment: dt.datetime, today: dt.date) -> str:
    """``11月24日（明天）18:30`` in local time; the year is added when it is not this year."""
    moment = moment.astimezone(local_tz())
    return f"{describe_day(moment, today, with_year=True)}{moment:%H:%M}"
