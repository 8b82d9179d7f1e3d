"""bot/rasa_states.py under the Rasa environment: dialogue states replayed incrementally per
conversation equal Rasa's own for every prefix of a conversation with forms, rejections, hidden
rule turns, reverted events and sessions, for branches of one conversation and for every argument
combination (scenarios in rasa_states_checks.py)."""
from __future__ import annotations

import pytest

from tests.rasa.rasa_env import needs_rasa_env, run_checks

pytestmark = needs_rasa_env


@pytest.fixture(scope="module")
def seen() -> dict:
    return run_checks("rasa_states_checks.py", timeout=600)


def test_every_prefix_of_a_conversation_has_rasas_states(seen):
    assert seen["patched"] is True
    assert seen["prefix_mismatches"] == []


def test_later_trackers_extend_the_kept_replay(seen):
    # most prefixes only replay their new events; a new session, an undone form turn or a
    # reverted event starts over
    assert seen["prefixes_extended"] >= seen["prefixes"] * 2 // 3


def test_a_user_message_read_back_from_the_store_rewinds_the_replay(seen):
    assert seen["store_like_mismatches"] == []
    # replays start over only at the start, a new session, an undone form turn or a reverted
    # event (8 argument combinations), not at every user message read back
    assert seen["store_like_restarts"] <= 8 * 6


def test_branches_of_one_conversation_have_rasas_states(seen):
    assert seen["branches_as_rasa"] == [True] * 4


def test_callers_cannot_change_kept_states(seen):
    assert seen["edits_do_not_leak"] is True


def test_events_editing_earlier_events_are_replayed_in_full(seen):
    assert seen["entities_added_as_rasa"] is True and seen["entities_added_not_kept"] is True
    assert seen["text_featurised_as_rasa"] is True and seen["text_featurised_not_kept"] is True


def test_other_domain_and_bounded_replays(seen):
    assert seen["other_domain_as_rasa"] is True
    assert seen["replays_bounded"] is True
