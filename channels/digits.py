"""Numbers that come from outside (query strings, XML fields, JSON answers, environment).

``str.isdigit()`` accepts superscripts and other Unicode digits ("²", "①") that ``int()``
then refuses, and ``int()``/``float()`` accept Arabic-Indic digits, underscores, spaces, signs,
"nan" and "inf". Outside input is a number here only when it is written in ASCII digits.
"""
from __future__ import annotations

import re
from typing import Any

_INTEGER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def ascii_int(value: Any, max_digits: int = 18) -> int | None:
    """``value`` as a non-negative int when it is a string of 1..``max_digits`` ASCII digits,
    or already an int (not a bool); otherwise None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= max_digits and _INTEGER.fullmatch(value):
        return int(value)
    return None


def ascii_decimal(value: str) -> float | None:
    """``value`` as a non-negative float when it is ASCII digits with an optional ``.fraction``
    (no sign, exponent, spaces, "nan" or "inf"); otherwise None."""
    if len(value) <= 32 and _DECIMAL.fullmatch(value):
        return float(value)
    return None
