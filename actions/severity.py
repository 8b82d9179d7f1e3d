"""Ticket severities (the tickets backend's ``urgent``, ``high``, ``normal``, ``low``).

One ranking for every kind of ticket: low < normal < high < urgent. Repair tickets never use
``low``; complaints use it for suggestions.
"""
from __future__ import annotations

from typing import Optional

URGENT = "urgent"
HIGH = "high"
NORMAL = "normal"
LOW = "low"
_RANK = {LOW: 0, NORMAL: 1, HIGH: 2, URGENT: 3}


def max_severity(*severities: Optional[str]) -> str:
    """The most severe of the given severities (unknown values and None are ignored; none
    known → normal)."""
    known = [s for s in severities if s in _RANK]
    return max(known, key=_RANK.__getitem__, default=NORMAL)
