"""Quiet hours of the SMS outbox: the channel-neutral class lives in ``channels.quiet_hours``."""
from channels.quiet_hours import QuietHours

__all__ = ["QuietHours"]
