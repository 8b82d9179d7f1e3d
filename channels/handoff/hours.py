"""Business hours of the human agents: a daily local-time window on Chinese working days.

``HANDOFF_HOURS`` is ``HH:MM-HH:MM`` (``08:00-20:00`` by default), optionally followed by
``,workdays`` (the default: working days per chinese_calendar, so weekends and public holidays
are closed and the official make-up working days 调休 are open) or ``,daily`` (every day);
``always`` means around the clock. Outside the years chinese_calendar knows, Monday to Friday
count as working days.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import chinese_calendar

_WINDOW = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


def is_workday(day: dt.date) -> bool:
    """A Chinese working day (chinese_calendar; weekdays outside the years it knows)."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return day.weekday() < 5


@dataclass(frozen=True)
class BusinessHours:
    """When agents are on duty: ``start``-``end`` local time (``end`` after ``start``), on
    working days only when ``workdays_only``; ``None`` window = always open."""

    window: tuple[dt.time, dt.time] | None = (dt.time(8, 0), dt.time(20, 0))
    workdays_only: bool = True
    timezone: str = "Asia/Shanghai"

    @classmethod
    def parse(cls, raw: str, timezone: str = "Asia/Shanghai", name: str = "HANDOFF_HOURS") -> "BusinessHours":
        """``"08:00-20:00"``, ``"08:00-20:00,workdays"``, ``"09:00-17:30,daily"`` or ``"always"``;
        ValueError naming ``name`` otherwise."""
        text = (raw or "").strip().lower() or "08:00-20:00"
        if text in ("always", "24/7", "off"):
            return cls(None, False, timezone)
        window, _, days = (part.strip() for part in text.partition(","))
        match = _WINDOW.fullmatch(window)
        if not match or days not in ("", "workdays", "daily"):
            raise ValueError(f"{name}: expected HH:MM-HH:MM[,workdays|,daily] or always, got {raw!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        try:
            start, end = dt.time(h1, m1), dt.time(h2, m2)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if end <= start:
            raise ValueError(f"{name}: the end ({window}) must come after the start, on the same day")
        return cls((start, end), days != "daily", timezone)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, now: float) -> bool:
        """Are agents on duty at ``now`` (unix seconds)?"""
        if self.window is None:
            return True
        local = dt.datetime.fromtimestamp(now, self.tz)
        if self.workdays_only and not is_workday(local.date()):
            return False
        start, end = self.window
        return start <= local.time() < end

    def next_open(self, now: float) -> dt.datetime:
        """The local moment the agents are next on duty (``now`` itself when open)."""
        local = dt.datetime.fromtimestamp(now, self.tz)
        if self.is_open(now) or self.window is None:
            return local
        start, _ = self.window
        day = local.date()
        if local.time() >= start:
            day += dt.timedelta(days=1)
        for _ in range(60):  # the longest Chinese holiday is 8 days
            if not self.workdays_only or is_workday(day):
                return dt.datetime.combine(day, start, tzinfo=self.tz)
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, start, tzinfo=self.tz)

    def describe(self) -> str:
        """The hours in Chinese for customers, e.g. ``工作日08:00-20:00``."""
        if self.window is None:
            return "全天"
        start, end = self.window
        return f"{'工作日' if self.workdays_only else '每天'}{start:%H:%M}-{end:%H:%M}"

    def describe_next(self, now: float) -> str:
        """When the agents are next on duty, e.g. ``明天08:00`` / ``12月1日08:00``."""
        moment = self.next_open(now)
        today = dt.datetime.fromtimestamp(now, self.tz).date()
        if moment.date() == today:
            return f"今天{moment:%H:%M}"
        if moment.date() == today + dt.timedelta(days=1):
            return f"明天{moment:%H:%M}"
        return f"{moment.month}月{moment.day}日{moment:%H:%M}"
