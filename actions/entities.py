"""Entities the NLU found in the customer's latest message."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from actions.text import normalize

if TYPE_CHECKING:
    from rasa_sdk import Tracker


def entity_values(tracker: "Tracker", name: str) -> list[str]:
    """Values of the entity ``name`` in the latest message: normalised, non-empty, each once,
    in the order the NLU found them."""
    values: list[str] = []
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") != name or entity.get("value") is None:
            continue
        value = normalize(str(entity["value"]))
        if value and value not in values:
            values.append(value)
    return values


def first_entity_value(tracker: "Tracker", name: str) -> Optional[str]:
    """The first value of the entity ``name`` in the latest message (normalised), or None."""
    values = entity_values(tracker, name)
    return values[0] if values else None
