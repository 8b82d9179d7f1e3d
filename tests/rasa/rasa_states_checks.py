"""Scenarios of bot/rasa_states.py run under the Rasa environment: ``rasa_states_checks.py``;
prints one JSON object (the observations) on its last line for tests/rasa/test_rasa_states.py."""
from __future__ import annotations

import copy
import json

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (ActionExecuted, ActionExecutionRejected, ActionReverted, ActiveLoop,
                                     BotUttered, DefinePrevUserUtteredFeaturization, EntitiesAdded,
                                     SessionStarted, SlotSet, UserUttered, UserUtteranceReverted)
from rasa.shared.core.trackers import DialogueStateTracker

from bot import rasa_states

DOMAIN = Domain.load("bot/domain")
RULE_ONLY = {"slots": ["fault_route"], "loops": ["report_fault_form"]}
ARGS = [dict(omit_unset_slots=o, ignore_rule_only_turns=i, rule_only_data=r)
        for o in (False, True) for i in (False, True) for r in (None, RULE_ONLY)]
AT = 1_700_000_000.0


def user(text: str, intent: str, at: float, **entities: str) -> UserUttered:
    found = [{"entity": k, "value": v, "start": 0, "end": len(v)} for k, v in entities.items()]
    return UserUttered(text, intent={"name": intent, "confidence": 0.95}, entities=found, timestamp=at)


def conversation() -> list:
    """A session with greetings, a form that runs over several turns (its re-executions undo
    events in the applied events), a rejected form, rule-only hidden turns, reverted turns and a
    second session. After each user message Rasa's ensemble adds how it was featurised."""
    t = iter(range(10_000))
    at = lambda: AT + next(t)  # noqa: E731
    events = [
        ActionExecuted("action_session_start", timestamp=at()), SessionStarted(timestamp=at()),
        ActionExecuted("action_listen", timestamp=at()),
        user("你好", "greet", at()), ActionExecuted("utter_greet", timestamp=at()), BotUttered("您好", timestamp=at()),
        ActionExecuted("action_listen", timestamp=at()),
        user("我家停电了", "report_fault", at(), area="江宁区"), SlotSet("fault_route", "form", timestamp=at()),
        ActionExecuted("report_fault_form", timestamp=at()), ActiveLoop("report_fault_form", timestamp=at()),
        SlotSet("requested_slot", "fault_description", timestamp=at()),
        ActionExecuted("action_listen", timestamp=at()),
        user("你们怎么收费", "ask_tariff", at()),
        ActionExecutionRejected("report_fault_form", timestamp=at()),
        ActionExecuted("utter_greet", hide_rule_turn=True, timestamp=at()), BotUttered("电价", timestamp=at()),
        ActionExecuted("report_fault_form", hide_rule_turn=True, timestamp=at()),
        SlotSet("requested_slot", "fault_description", timestamp=at()),
        ActionExecuted("action_listen", hide_rule_turn=True, timestamp=at()),
        user("整栋楼没电", "inform", at()),
        ActionExecuted("report_fault_form", timestamp=at()), SlotSet("fault_description", "整栋楼没电", timestamp=at()),
        ActiveLoop(None, timestamp=at()), SlotSet("requested_slot", None, timestamp=at()),
        ActionExecuted("utter_goodbye", timestamp=at()),
        ActionExecuted("action_listen", timestamp=at()),
        user("嗯", "nlu_fallback", at()), UserUtteranceReverted(timestamp=at()),
        ActionExecuted("action_listen", timestamp=at()),
        user("谢谢", "thank", at()), ActionExecuted("utter_greet", timestamp=at()), ActionReverted(timestamp=at()),
        ActionExecuted("utter_goodbye", timestamp=at()),
        ActionExecuted("action_listen", timestamp=at()),
        ActionExecuted("action_session_start", timestamp=at()), SessionStarted(timestamp=at()),
        SlotSet("fault_route", "form", timestamp=at()), ActionExecuted("action_listen", timestamp=at()),
        user("再见", "goodbye", at()), ActionExecuted("utter_goodbye", timestamp=at()),
        ActionExecuted("action_listen", timestamp=at()),
    ]
    featurised = []
    for event, following in zip(events, events[1:] + [None]):
        featurised.append(event)
        if isinstance(event, UserUttered) and not isinstance(following, UserUtteranceReverted):
            featurised.append(DefinePrevUserUtteredFeaturization(False, timestamp=event.timestamp))
    return featurised


def main() -> dict:
    seen: dict = {}
    original = DialogueStateTracker.past_states
    rasa_states.install()
    seen["patched"] = DialogueStateTracker.past_states is not original

    # Every prefix of the conversation, as the tracker store hands it out turn after turn (a new
    # tracker over the same event objects), against Rasa's own states of a fresh copy.
    events = conversation()
    mismatches, replays_kept = [], []
    for k in range(1, len(events) + 1):
        tracker = DialogueStateTracker.from_events("c1", events[:k], DOMAIN.slots)
        fresh = DialogueStateTracker.from_events("c1", copy.deepcopy(events[:k]), DOMAIN.slots)
        before = dict(rasa_states._replays)
        for n, kwargs in enumerate(ARGS):
            if tracker.past_states(DOMAIN, **kwargs) != original(fresh, DOMAIN, **kwargs):
                mismatches.append((k, n))
        replays_kept.append(sum(1 for key, r in rasa_states._replays.items() if before.get(key) is r))
    seen["prefix_mismatches"] = mismatches
    seen["prefixes"] = len(events)
    # the same replay objects went on for most prefixes (only a new session, an undone form turn
    # or a reverted event makes a replay start over)
    seen["prefixes_extended"] = sum(1 for n in replays_kept if n == len(ARGS))

    # As the tracker store hands them out: the latest user message, once saved, comes back as
    # read from Redis (an equal event, another object).
    started = []
    init = rasa_states.Replay.__init__

    def counted(self, *args, **kwargs):
        started.append(args[0].sender_id)
        init(self, *args, **kwargs)

    rasa_states.Replay.__init__ = counted
    shared, store_mismatches = conversation(), []
    for k in range(1, len(shared) + 1):
        tracker = DialogueStateTracker.from_events("c5", shared[:k], DOMAIN.slots)
        fresh = DialogueStateTracker.from_events("c5", copy.deepcopy(shared[:k]), DOMAIN.slots)
        store_mismatches += [(k, n) for n, kw in enumerate(ARGS)
                             if tracker.past_states(DOMAIN, **kw) != original(fresh, DOMAIN, **kw)]
        latest = max((j for j in range(k) if isinstance(shared[j], UserUttered)), default=None)
        if latest is not None:
            shared[latest] = copy.deepcopy(shared[latest])
    rasa_states.Replay.__init__ = init
    seen["store_like_mismatches"] = store_mismatches
    seen["store_like_restarts"] = started.count("c5")

    # A branch of the same conversation (a rewritten history, another node's events) and back.
    base = conversation()[:13]
    branch = base + [user("不对", "deny", AT + 500), ActionExecuted("utter_goodbye", timestamp=AT + 501)]
    main_line = base + [user("整栋楼没电", "inform", AT + 600)]
    alternating = []
    for events_now in (branch, main_line, branch[:-1], main_line):
        tracker = DialogueStateTracker.from_events("c2", events_now, DOMAIN.slots)
        fresh = DialogueStateTracker.from_events("c2", copy.deepcopy(events_now), DOMAIN.slots)
        alternating.append(all(tracker.past_states(DOMAIN, **kw) == original(fresh, DOMAIN, **kw) for kw in ARGS))
    seen["branches_as_rasa"] = alternating

    # Callers edit what they get: neither the replay nor later callers see it.
    tracker = DialogueStateTracker.from_events("c3", conversation()[:20], DOMAIN.slots)
    expected = original(DialogueStateTracker.from_events("c3", conversation()[:20], DOMAIN.slots), DOMAIN)
    for state in tracker.past_states(DOMAIN):
        for sub in state.values():
            sub.clear()
    again = DialogueStateTracker.from_events("c3", tracker.events, DOMAIN.slots)
    seen["edits_do_not_leak"] = again.past_states(DOMAIN) == expected

    # An event that edits an earlier one (EntitiesAdded) is never replayed incrementally.
    with_added = conversation()[:8] + [EntitiesAdded([{"entity": "area", "value": "浦口区"}], timestamp=AT + 700)]
    tracker = DialogueStateTracker.from_events("c4", with_added, DOMAIN.slots)
    seen["entities_added_as_rasa"] = tracker.past_states(DOMAIN) == original(
        DialogueStateTracker.from_events("c4", copy.deepcopy(with_added), DOMAIN.slots), DOMAIN)
    seen["entities_added_not_kept"] = not any(key[0] == "c4" for key in rasa_states._replays)
    with_text = conversation()[:8] + [DefinePrevUserUtteredFeaturization(True, timestamp=AT + 700)]
    tracker = DialogueStateTracker.from_events("c6", with_text, DOMAIN.slots)
    seen["text_featurised_as_rasa"] = tracker.past_states(DOMAIN) == original(
        DialogueStateTracker.from_events("c6", copy.deepcopy(with_text), DOMAIN.slots), DOMAIN)
    seen["text_featurised_not_kept"] = not any(key[0] == "c6" for key in rasa_states._replays)

    # Another domain object: its own replay.
    other = Domain.load("bot/domain")
    tracker = DialogueStateTracker.from_events("c1", events, DOMAIN.slots)
    seen["other_domain_as_rasa"] = tracker.past_states(other) == original(
        DialogueStateTracker.from_events("c1", copy.deepcopy(events), DOMAIN.slots), other)

    # The number of replays kept is bounded.
    for i in range(rasa_states.MAX_REPLAYS + 10):
        DialogueStateTracker.from_events(f"many-{i}", events[:3], DOMAIN.slots).past_states(DOMAIN)
    seen["replays_bounded"] = len(rasa_states._replays) == rasa_states.MAX_REPLAYS
    return seen


if __name__ == "__main__":
    print(json.dumps(main(), ensure_ascii=False))
