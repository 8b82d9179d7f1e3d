"""Quiet hours: no non-urgent proactive SMS at night; such messages wait until morning."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


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
