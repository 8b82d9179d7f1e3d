"""bot/lock_store.py (Rasa's ticket locks on any REDIS_URL) against a real Redis and a real
3-master Redis Cluster: turns of one conversation queue behind each other, the key shares its
tracker's hash slot and expires by itself (scenarios in lock_store_checks.py, run under the Rasa
environment)."""
from __future__ import annotations

import pytest

from tests.rasa.rasa_env import needs_rasa_env, run_checks

pytestmark = needs_rasa_env


def observe(url: str) -> dict:
    return run_checks("lock_store_checks.py", url, timeout=300)


@pytest.fixture(params=["single", "cluster"])
def seen(request) -> dict:
    url = request.getfixturevalue("redis_url" if request.param == "single" else "redis_cluster_url")
    return observe(url)


def test_turns_of_one_conversation_take_turns(seen):
    assert seen["class"] == "PowerDeskLockStore"
    assert seen["order"] == ["first in", "first out", "second in", "second out"]
    assert seen["tickets_while_held"] == 2
    assert seen["exists_after"] is False


def test_lock_key_is_hash_tagged_like_the_tracker_and_expires(seen):
    assert seen["key"].startswith("pdtest:lock:{h-")  # the id has braces: a digest is the tag
    assert seen["same_slot_as_tracker"] is True
    assert 30 < seen["ttl_while_held"] <= 30 + 60 + 1
    assert 5 < seen["dead_ttl"] <= 5 + 60 + 1
