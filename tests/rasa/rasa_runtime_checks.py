"""Scenarios of bot/rasa_runtime.py run under the Rasa environment: ``rasa_runtime_checks.py``;
prints one JSON object (the observations) on its last line for tests/rasa/test_rasa_runtime.py."""
from __future__ import annotations

import copy
import json
import pickle

from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.core.policies.policy import PolicyPrediction
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (ActionExecuted, ActionExecutionRejected, ActiveLoop, BotUttered, SlotSet,
                                     UserUttered)
from rasa.shared.core.trackers import DialogueStateTracker

from bot import rasa_runtime, rasa_states

DOMAIN = Domain.load("bot/domain")
RULE_ONLY = {"slots": ["fault_route"], "loops": ["report_fault_form"]}
ARGS = [dict(omit_unset_slots=o, ignore_rule_only_turns=i, rule_only_data=r)
        for o in (False, True) for i in (False, True) for r in (None, RULE_ONLY)]
VALID = {"events": [{"event": "slot", "name": "area", "value": "江宁区", "timestamp": None}],
         "responses": [{"text": "好的"}]}
INVALID = [{"events": [{"event": "slot", "name": 5}]}, {"events": "none"}, {"responses": [3]},
           {"events": [{"event": "no_such_event"}]}]


def events() -> list:
    at = 1_700_000_000.0
    return [
        ActionExecuted("action_session_start", timestamp=at), ActionExecuted("action_listen", timestamp=at + 1),
        UserUttered("你好", intent={"name": "greet", "confidence": 0.99}, timestamp=at + 2),
        ActionExecuted("utter_greet", timestamp=at + 3), BotUttered("您好", timestamp=at + 4),
        ActionExecuted("action_listen", timestamp=at + 5),
        UserUttered("我家停电了", intent={"name": "report_fault", "confidence": 0.97},
                    entities=[{"entity": "area", "value": "江宁区", "start": 0, "end": 3}], timestamp=at + 6),
        SlotSet("fault_route", "form", timestamp=at + 7),
        ActionExecuted("report_fault_form", timestamp=at + 8), ActiveLoop("report_fault_form", timestamp=at + 9),
        SlotSet("requested_slot", "fault_description", timestamp=at + 10),
        ActionExecuted("action_listen", timestamp=at + 11),
        UserUttered("整栋楼没电", intent={"name": "inform", "confidence": 0.9}, timestamp=at + 12),
    ]


def states_of(tracker: DialogueStateTracker) -> list:
    return [tracker.past_states(DOMAIN, **kwargs) for kwargs in ARGS]


def validation_errors(validate) -> list:
    found = []
    for answer in INVALID:
        try:
            validate(RemoteAction("action_x", None), answer)
            found.append(None)
        except ValidationError as error:
            found.append(error.message)
    return found


def main() -> dict:
    seen: dict = {}
    original_validate = RemoteAction._validate_action_result
    original_past_states = DialogueStateTracker.past_states
    # Unpatched figures first (the same process, before install()).
    plain = DialogueStateTracker.from_events("c1", events(), DOMAIN.slots)
    expected_states = states_of(plain)
    grown = DialogueStateTracker.from_events("c1", events(), DOMAIN.slots)
    grown.update(ActionExecuted("report_fault_form"))
    expected_grown = states_of(grown)
    expected_errors = validation_errors(original_validate)
    seen["valid_ok_unpatched"] = original_validate(RemoteAction("action_x", None), VALID)
    from rasa.shared.core.events import Event
    expected_event_types = [type(Event.from_parameters(d)).__name__ for d in
                            [e.as_dict() for e in events()] + [{"event": "session_started"},
                                                               {"event": "followup", "name": "x"}]]

    seen["installed"] = rasa_runtime.install()
    seen["validate_patched"] = RemoteAction._validate_action_result is not original_validate
    seen["past_states_patched"] = DialogueStateTracker.past_states is not original_past_states
    seen["valid_ok"] = RemoteAction._validate_action_result(RemoteAction("action_x", None), VALID)
    seen["errors"] = validation_errors(RemoteAction._validate_action_result)
    seen["errors_as_unpatched"] = seen["errors"] == expected_errors

    tracker = DialogueStateTracker.from_events("c1", events(), DOMAIN.slots)
    first = states_of(tracker)
    seen["states_as_unpatched"] = first == expected_states
    for states in first:  # callers edit what they get: later calls must not see it
        for state in states:
            state.pop("user", None)
            for sub in state.values():
                sub.clear()
    seen["cached_states_unaffected_by_edits"] = states_of(tracker) == expected_states
    seen["cache_entries"] = len(tracker.__dict__[rasa_states.STATES_CACHE])
    tracker.update(ActionExecuted("report_fault_form"))
    seen["states_follow_new_events"] = states_of(tracker) == expected_grown
    seen["copy_starts_empty"] = rasa_states.STATES_CACHE not in tracker.copy().__dict__
    seen["deepcopy_cache_empty"] = len(copy.deepcopy(tracker).__dict__[rasa_states.STATES_CACHE]) == 0
    seen["pickle_cache_empty"] = len(pickle.loads(pickle.dumps(tracker)).__dict__[rasa_states.STATES_CACHE]) == 0
    other_domain = Domain.load("bot/domain")
    seen["other_domain_recomputed"] = tracker.past_states(other_domain) == expected_grown[0]

    # TED is skipped only when a rule/memoization prediction for this very state is certain.
    t = DialogueStateTracker.from_events("c2", events(), DOMAIN.slots)
    probabilities = [0.0] * len(DOMAIN.action_names_or_texts)
    certain = PolicyPrediction(probabilities[:1] + [1.0] + probabilities[2:], "RulePolicy", policy_priority=6)
    unsure = PolicyPrediction(probabilities[:1] + [0.3] + probabilities[2:], "RulePolicy", policy_priority=6)
    seen["ted_without_predictions"] = rasa_runtime.ted_cannot_win(t, 1)
    rasa_runtime._record(t, unsure)
    seen["ted_after_unsure"] = rasa_runtime.ted_cannot_win(t, 1)
    rasa_runtime._record(t, certain)
    seen["ted_after_certain"] = rasa_runtime.ted_cannot_win(t, 1)
    seen["ted_priority_not_lower"] = rasa_runtime.ted_cannot_win(t, 6)
    seen["ted_copy_forgets"] = rasa_runtime.ted_cannot_win(copy.deepcopy(t), 1)
    t.update(ActionExecuted("utter_greet"))
    seen["ted_after_new_event"] = rasa_runtime.ted_cannot_win(t, 1)
    rasa_runtime._record(t, certain)
    seen["ted_after_new_certain"] = rasa_runtime.ted_cannot_win(t, 1)
    t.update(ActionExecutionRejected("utter_greet"))
    rasa_runtime._record(t, certain)
    seen["ted_after_rejection"] = rasa_runtime.ted_cannot_win(t, 1)

    # Events read from JSON resolve to the same classes, unknown names fail as before.
    from rasa.shared.core.events import Event, SessionStarted
    dicts = [e.as_dict() for e in events()] + [{"event": "session_started"}, {"event": "followup", "name": "x"}]
    seen["events_as_unpatched"] = [type(Event.from_parameters(d)).__name__ for d in dicts] == expected_event_types
    seen["events_twice_same"] = [type(Event.from_parameters(d)).__name__ for d in dicts] == expected_event_types
    seen["event_default"] = Event.resolve_by_type("no_such_event", SessionStarted) is SessionStarted
    try:
        Event.resolve_by_type("no_such_event")
        seen["unknown_event_error"] = None
    except ValueError as error:
        seen["unknown_event_error"] = str(error)
    return seen


if __name__ == "__main__":
    print(json.dumps(main(), ensure_ascii=False))
