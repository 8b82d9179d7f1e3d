"""Rasa runtime speed-up ``states``: a tracker's dialogue states are computed once per state of
the tracker.

Every prediction of the next action runs three policies, and each turns the whole session into
dialogue states (``DialogueStateTracker.past_states``: replays every event); several predictions
per turn recompute the same states for the same events. They are cached on the tracker, keyed by
the arguments and by the tracker's events (their number and the identity of the last one), and
every caller gets its own copy, as the policies edit the states they are given.

Registered in ``bot/rasa_runtime.py`` under the name ``states`` of ``RASA_RUNTIME_SPEEDUPS``.
"""
from __future__ import annotations

from typing import Any, Optional

# Attribute of a tracker: its cached dialogue states.
STATES_CACHE = "_powerdesk_states_cache"


def copy_states(states: list[dict]) -> list[dict]:
    """A copy of dialogue states that callers may edit: each state and each of its sub-states
    (dicts of strings and tuples) is new."""
    return [{key: dict(sub) if isinstance(sub, dict) else sub for key, sub in state.items()}
            for state in states]


class StatesCache(dict):
    """A tracker's cached dialogue states; copies and pickles of the tracker start empty (a
    deep copy would otherwise copy the domain the entries refer to)."""

    def __copy__(self) -> "StatesCache":
        return StatesCache()

    def __deepcopy__(self, _memo: dict) -> "StatesCache":
        return StatesCache()

    def __reduce__(self) -> tuple:
        return StatesCache, ()


def install() -> None:
    """Replaces ``DialogueStateTracker.past_states`` by its cached version."""
    from rasa.shared.core.trackers import DialogueStateTracker

    original = DialogueStateTracker.past_states

    def past_states(self: DialogueStateTracker, domain: Any, omit_unset_slots: bool = False,
                    ignore_rule_only_turns: bool = False,
                    rule_only_data: Optional[dict[str, Any]] = None) -> list[dict]:
        events = self.events
        last = events[-1] if events else None
        cache = self.__dict__.get(STATES_CACHE)
        if cache is None:
            cache = self.__dict__[STATES_CACHE] = StatesCache()
        key = (id(domain), omit_unset_slots, ignore_rule_only_turns, id(rule_only_data))
        hit = cache.get(key)
        if (hit is not None and hit[0] is domain and hit[1] is rule_only_data and hit[2] == len(events)
                and hit[3] is last):
            return copy_states(hit[4])
        states = original(self, domain, omit_unset_slots=omit_unset_slots,
                          ignore_rule_only_turns=ignore_rule_only_turns, rule_only_data=rule_only_data)
        cache[key] = (domain, rule_only_data, len(events), last, copy_states(states))
        return states

    DialogueStateTracker.past_states = past_states
