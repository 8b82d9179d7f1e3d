"""Redis answers as text, whether the client decodes responses (``str``) or not (``bytes``)."""
from __future__ import annotations

from typing import Any


def redis_text(value: Any) -> str | None:
    """``value`` as ``str`` (bytes decoded as UTF-8); None stays None."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
