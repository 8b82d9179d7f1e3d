"""Numbers from environment variables, checked the same way by the gateway, the action server
and the backend clients (this package is imported by both Python environments)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

N = TypeVar("N", int, float)


def env_number(env: Mapping[str, str], name: str, default: N, low: N, high: N, *,
               parse: Callable[[str], N] = int,
               error: type[ValueError] = ValueError) -> N:
    """``env[name]`` parsed with ``parse`` (``int`` or ``float``), ``default`` when unset or
    blank; raises ``error`` with one clear line when it does not parse or lies outside
    ``low``..``high``."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        kind = "a whole number" if parse is int else "a number"
        raise error(f"{name} must be {kind}, got {raw!r}") from None
    if not low <= value <= high:
        raise error(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value
