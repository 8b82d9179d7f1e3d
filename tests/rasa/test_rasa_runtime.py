"""bot/rasa_runtime.py under the Rasa environment: the action server's answers are checked as
``jsonschema.validate`` checks them (same errors), and cached dialogue states equal Rasa's own,
follow new events, and cannot be changed by a caller (scenarios in rasa_runtime_checks.py)."""
from __future__ import annotations

import pytest

from tests.rasa.rasa_env import needs_rasa_env, run_checks

pytestmark = needs_rasa_env


@pytest.fixture(scope="module")
def seen() -> dict:
    return run_checks("rasa_runtime_checks.py", timeout=600)


def test_patches_are_installed(seen):
    assert seen["installed"] == ["validation", "states", "ted", "events", "graph", "http", "tfcall"]
    assert seen["validate_patched"] and seen["past_states_patched"]


def test_action_results_are_validated_as_before(seen):
    assert seen["valid_ok_unpatched"] is True and seen["valid_ok"] is True
    assert seen["errors_as_unpatched"] is True
    assert all(e and "Failed to validate Action server response" in e for e in seen["errors"])


def test_cached_states_equal_rasas_own(seen):
    assert seen["states_as_unpatched"] is True
    assert seen["cache_entries"] == 8  # one per combination of arguments


def test_callers_cannot_change_cached_states(seen):
    assert seen["cached_states_unaffected_by_edits"] is True


def test_states_follow_the_trackers_events_and_domain(seen):
    assert seen["states_follow_new_events"] is True
    assert seen["other_domain_recomputed"] is True


def test_ted_is_skipped_only_when_a_certain_prediction_of_this_state_outranks_it(seen):
    assert seen["ted_without_predictions"] is False and seen["ted_after_unsure"] is False
    assert seen["ted_after_certain"] is True
    assert seen["ted_priority_not_lower"] is False  # a policy of TED's priority could tie and lose
    assert seen["ted_copy_forgets"] is False
    assert seen["ted_after_new_event"] is False and seen["ted_after_new_certain"] is True
    assert seen["ted_after_rejection"] is False  # the ensemble zeroes a rejected action


def test_copies_of_a_tracker_start_without_the_cache(seen):
    assert seen["copy_starts_empty"] and seen["deepcopy_cache_empty"] and seen["pickle_cache_empty"]


def test_events_are_read_as_before(seen):
    assert seen["events_as_unpatched"] is True and seen["events_twice_same"] is True
    assert seen["event_default"] is True
    assert seen["unknown_event_error"] == "Unknown event name 'no_such_event'."
