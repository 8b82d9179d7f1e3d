"""Rasa runtime speed-up ``states``: a tracker's dialogue states are computed once per state of
the tracker.

Every prediction of the next action runs three policies, and each turns the whole session into
dialogue states (``DialogueStateTracker.past_states``: replays every event); several predictions
per turn recompute the same states for the same events. They are cached on the tracker, keyed by
the arguments and by the tracker's events (their number and the identity of the last one), and
every caller gets its own copy, as the policies edit the states they are given.

And they are computed incrementally across trackers: the replay behind ``past_states`` (Rasa's
``Domain.states_for_tracker_history``: one state before each action of the tracker's applied
events, plus the final one) is kept per conversation and arguments on this node, and a later
tracker of the same conversation whose applied events start with the very same event objects
(the tracker store hands out the same objects for events it has seen, see
``bot/tracker_store.py``) only replays its new events. The replay also keeps snapshots taken
before each of the last few user messages: a tracker that differs from the replayed events only
after one of them (the store hands out a saved user message as read back from Redis, another
object, when the live one differs from its JSON: its ``use_text_for_featurization``) is replayed
from that snapshot. Any other tracker (rewritten history, a new session or
checkpoint) is replayed from the start, as Rasa does. So the cost of a prediction no longer grows
with the loaded session. Trackers with events that change an earlier event in place in a way a
later state could see differently (``EntitiesAdded``; ``DefinePrevUserUtteredFeaturization`` asking
for the text: end-to-end policies only) are replayed in full. The ``DefinePrevUserUtteredFeaturization``
without text that Rasa adds after every user message sets its flag before any state of the
replay sees that message, as in Rasa's own replay.

Registered in ``bot/rasa_runtime.py`` under the name ``states`` of ``RASA_RUNTIME_SPEEDUPS``.
"""
from __future__ import annotations

import copy
import json
from collections import OrderedDict, deque
from typing import Any, Optional

from bot.node_local import NodeLocal

# Attribute of a tracker: its cached dialogue states.
STATES_CACHE = "_powerdesk_states_cache"
# Replays kept on this node (one per conversation and argument combination, least recently used
# dropped): each holds a replay tracker and the states so far (tens of kB).
MAX_REPLAYS = 1024
# Snapshots a replay keeps (taken before each user message, the latest ones).
SNAPSHOTS = 3


def copy_states(states: list[dict]) -> list[dict]:
    """A copy of dialogue states that callers may edit: each state and each of its sub-states
    (dicts of strings and tuples) is new."""
    return [{key: dict(sub) if isinstance(sub, dict) else sub for key, sub in state.items()}
            for state in states]


class StatesCache(NodeLocal, dict):
    """A tracker's cached dialogue states; copies and pickles of the tracker start empty (a
    deep copy would otherwise copy the domain the entries refer to)."""


class Replay:
    """Rasa's ``Domain.states_for_tracker_history`` as a replay that can take more events: the
    states before each action of the applied events seen so far, and the replay tracker after
    them."""

    def __init__(self, tracker: Any, domain: Any, omit_unset_slots: bool, ignore_rule_only_turns: bool,
                 rule_only_data: Optional[dict[str, Any]]) -> None:
        self.domain, self.rule_only_data = domain, rule_only_data
        self.omit_unset_slots, self.ignore_rule_only_turns = omit_unset_slots, ignore_rule_only_turns
        self.tracker = tracker.init_copy()
        self.events: list = []  # the applied events replayed, in order
        self.states: list[dict] = []
        self.last_ml_action_sub_state: Optional[dict] = None
        self.turn_was_hidden = False
        self.snapshots: list[tuple] = []

    def extend(self, events: list) -> None:
        """Replays ``events``, which follow those replayed so far."""
        from rasa.shared.core.events import ActionExecuted, UserUttered

        for event in events:
            if isinstance(event, ActionExecuted):
                self._state(event.hide_rule_turn, commit=True)
            elif isinstance(event, UserUttered):
                self.snapshots = self.snapshots[-(SNAPSHOTS - 1):] + [self._snapshot()]
            self.tracker.update(event)
            self.events.append(event)

    def rewind(self, count: int) -> bool:
        """Goes back to the latest snapshot taken after at most ``count`` events; False when
        there is none."""
        while self.snapshots and self.snapshots[-1][0] > count:
            self.snapshots.pop()
        if not self.snapshots:
            return False
        done, tracker, states, last_ml, hidden = self.snapshots[-1]
        self.tracker = _tracker_copy(tracker)
        del self.events[done:]
        del self.states[states:]
        self.last_ml_action_sub_state, self.turn_was_hidden = last_ml, hidden
        return True

    def _snapshot(self) -> tuple:
        return (len(self.events), _tracker_copy(self.tracker), len(self.states), self.last_ml_action_sub_state,
                self.turn_was_hidden)

    def states_now(self) -> list[dict]:
        """The states of the replayed events: those before each action, then the current one."""
        final = self._state(False, commit=False)
        return self.states + ([final] if final is not None else [])

    def _state(self, hide_rule_turn: bool, commit: bool) -> Optional[dict]:
        """One step of ``states_for_tracker_history`` on the replay tracker (same order of the
        same calls); ``commit``: keep its effects, else only return the state."""
        from rasa.shared.core.constants import PREVIOUS_ACTION

        domain, tr = self.domain, self.tracker
        last_ml, hidden = self.last_ml_action_sub_state, self.turn_was_hidden
        if self.ignore_rule_only_turns:
            if not hidden:
                last_ml = domain._get_prev_action_sub_state(tr)
            if not tr.followup_action and not tr.latest_action_name == tr.active_loop_name:
                hidden = hide_rule_turn
        if commit:
            self.last_ml_action_sub_state, self.turn_was_hidden = last_ml, hidden
        if self.ignore_rule_only_turns and hidden:
            return None
        state = domain.get_active_state(tr, omit_unset_slots=self.omit_unset_slots)
        if self.ignore_rule_only_turns:
            domain._remove_rule_only_features(state, self.rule_only_data)
            if self.states:
                domain._substitute_rule_only_user_input(state, self.states[-1])
            if last_ml:
                state[PREVIOUS_ACTION] = last_ml
        state = domain._clean_state(state)
        if commit:
            self.states.append(state)
        return state


def _tracker_copy(tracker: Any) -> Any:
    """A replay tracker's copy that its later updates do not change (the attributes that events
    change in place: slots, the active loop, the events)."""
    twin = copy.copy(tracker)
    twin.slots = {name: copy.copy(slot) for name, slot in tracker.slots.items()}
    twin.active_loop = copy.copy(tracker.active_loop)
    twin.events = deque(tracker.events, maxlen=tracker.events.maxlen)
    return twin


_replays: "OrderedDict[tuple, Replay]" = OrderedDict()


def frozen(rule_only_data: Optional[dict[str, Any]]) -> Optional[str]:
    """A key for the rule-only slots and loops: their value (the rule policy passes an equal,
    new dict on every call)."""
    return None if rule_only_data is None else json.dumps(rule_only_data, sort_keys=True, default=str)


def replayed_states(tracker: Any, domain: Any, omit_unset_slots: bool, ignore_rule_only_turns: bool,
                    rule_only_data: Optional[dict[str, Any]]) -> Optional[list[dict]]:
    """The tracker's dialogue states from this node's replay of its conversation, extended by its
    new applied events (a new replay when the kept one is not a prefix of them); None for a
    tracker whose events edit earlier events."""
    from rasa.shared.core.events import DefinePrevUserUtteredFeaturization, EntitiesAdded

    applied = tracker.applied_events()
    key = (tracker.sender_id, id(domain), omit_unset_slots, ignore_rule_only_turns, frozen(rule_only_data),
           tracker.is_rule_tracker)
    replay = _replays.pop(key, None)
    if (replay is None or replay.domain is not domain or replay.rule_only_data != rule_only_data
            or replay.tracker.slots.keys() != tracker.slots.keys()):
        replay = Replay(tracker, domain, omit_unset_slots, ignore_rule_only_turns, rule_only_data)
    done = len(replay.events)
    same = next((i for i, (a, b) in enumerate(zip(replay.events, applied)) if a is not b), min(done, len(applied)))
    if same < done:
        if not replay.rewind(same):
            replay = Replay(tracker, domain, omit_unset_slots, ignore_rule_only_turns, rule_only_data)
        done = len(replay.events)
    new = applied[done:]
    if any(isinstance(e, EntitiesAdded) or (isinstance(e, DefinePrevUserUtteredFeaturization)
                                            and e.use_text_for_featurization) for e in new):
        return None
    replay.extend(new)
    _replays[key] = replay
    while len(_replays) > MAX_REPLAYS:
        _replays.popitem(last=False)
    return replay.states_now()


def install() -> None:
    """Replaces ``DialogueStateTracker.past_states`` by its cached, incremental version."""
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
        key = (id(domain), omit_unset_slots, ignore_rule_only_turns, frozen(rule_only_data))
        hit = cache.get(key)
        if (hit is not None and hit[0] is domain and hit[1] == rule_only_data and hit[2] == len(events)
                and hit[3] is last):
            return copy_states(hit[4])
        states = replayed_states(self, domain, omit_unset_slots, ignore_rule_only_turns, rule_only_data)
        if states is None:
            states = original(self, domain, omit_unset_slots=omit_unset_slots,
                              ignore_rule_only_turns=ignore_rule_only_turns, rule_only_data=rule_only_data)
        cache[key] = (domain, rule_only_data, len(events), last, copy_states(states))
        return copy_states(states)

    DialogueStateTracker.past_states = past_states
