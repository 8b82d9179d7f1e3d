"""Quiet hours: a daily local-time window in which non-urgent proactive messages wait.

Channel-neutral: the delivery facade (``channels.delivery``) applies it to every channel; the
SMS outbox uses the same class.
"""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def parse_window(raw: str, name: str) -> tuple[time, time] | None:
    """Parse ``"21:00-08:00"`` (variable ``name``, for the error); ``off``/empty disables.

    Raises ValueError with a one-line message naming ``name`` when ``raw`` is malformed."""
    raw = raw.strip().lower()
    if raw in ("", "off", "none", "0"):
        return None
    match = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", raw)
    if not match:
        raise ValueError(f"{name}: expected HH:MM-HH:MM or off, got {raw!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        return time(h1, m1), time(h2, m2)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


class QuietHours:
    """A daily window in local time, e.g. 21:00–08:00 Asia/Shanghai (may cross midnight)."""

    def __init__(self, window: tuple[time, time] | None, timezone: str = "Asia/Shanghai") -> None:
        self.window = window
        self.tz = ZoneInfo(timezone)

    def _local(self, now: float) -> datetime:
        return datetime.fromtimestamp(now, self.tz)

    def is_quiet(self, now: float) -> bool:
        """True when ``now`` (unix seconds) falls inside the window."""
        if self.window is None:
            return False
        start, end = self.window
        current = self._local(now).time()
        if start == end:
            return False
        if start < end:
            return start <= current < end
        return current >= start or current < end

    def next_allowed(self, now: float) -> float:
        """``now`` if outside the window, else the unix time the window ends."""
        if not self.is_quiet(now):
            return now
        _, end = self.window
        local = self._local(now)
        candidate = datetime.combine(local.date(), end, tzinfo=self.tz)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=self.tz)
        return candidate.timestamp()
